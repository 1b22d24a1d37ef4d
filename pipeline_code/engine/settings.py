"""The run document: one typed, validated settings schema for a run, shared by every part.

A run's settings are built from layers, each overriding the one before (`Settings.merged`): the
engine's defaults (the dataclasses below), the deployment's defaults (`cdk.json`, key
``forecast-mlops.run``, or the local defaults), a settings file uploaded beside the data
(``raw/<name>.settings.json`` next to ``raw/<name>.csv``; locally ``<data>.settings.json`` beside the data,
then ``--settings F`` over it), and locally, command-line flags (docs/settings.md lists every key). The merged document is validated once, before any
job starts, and written to ``runs/<id>/input/settings.json``: every job reads it from there.

Only the standard library and the stdlib-only core modules (calendar, spec) are imported here, so
every part (serving, Lambdas, the CDK app) may import it.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from datetime import date
from typing import Any, Mapping, Sequence

from pipeline_code.engine.core.calendar import infer_freq, off_calendar, parse_freq, season_length_for
from pipeline_code.engine.core.spec import max_fourier_k, season_period

WEEKS_PER_YEAR = 365.25 / 7
# The data's accepted magnitudes (checked by ``engine.dataset``): squares and sums of squared errors
# over any series stay finite in float64. A fill value (``series.fill_value``) is held to them too.
MAX_ABS_VALUE = 1e100
MIN_ABS_VALUE = 1e-100
# Largest settings file accepted (a document is about 1.5 KB).
SETTINGS_MAX_BYTES = 64 * 1024
# Digits of a settings file's integer read as an int; a longer one is read as a float (parse_document).
MAX_INT_DIGITS = 18
# Local error scales: the RMS of this many previous one-step CV errors (engine/core/calibration.py) ...
SCALE_WINDOW = 26
# ... defined once at least this many errors are behind a split (`local_scales`: window // 2).
SCALE_MIN_ERRORS = SCALE_WINDOW // 2
# The file name of the document inside a run (``runs/<id>/input/``) and beside an upload.
SETTINGS_FILE = "settings.json"
# The name of the jobs' input (processing) and channel (training) that carries the document.
SETTINGS_CHANNEL = "settings"
SETTINGS_SUFFIX = ".settings.json"


# What a refusal before registration leaves: said by the runner and the command line alike.
NOTHING_REGISTERED = "nothing was registered; the approved model is unchanged"


class SettingsError(ValueError):
    """A settings document that cannot be used; names the key (``section.field``) and the problem."""

    def __init__(self, problems: list[str], source: str = "settings") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """How to read a series and how far to forecast it."""

    freq: str = "W-FRI"
    season_length: float = WEEKS_PER_YEAR
    horizon: int = 26
    # Largest allowed upload, in bytes.
    max_file_bytes: int = 50 * 1024 * 1024
    # Missing periods tolerated (filled by interpolation) before a series is refused as gappy.
    max_gap_periods: int = 0
    # Only the latest max_rows observations are used (every row is still validated): bounds run time
    # and memory for long files. Fits use the last cv.window rows anyway; older rows would add CV splits
    # (tuning evidence from long ago), not model inputs. 1560 weeks = 30 years.
    max_rows: int = 1560


@dataclass(frozen=True, kw_only=True)
class PreprocessSettings:
    """Outliers and the structural break (an episode replaced by a counterfactual)."""

    iqr_multiplier: float = 3.0
    break_start: str | None = "2020-01-01"
    break_end: str | None = None
    # Flagged points at most this many periods apart belong to the same episode.
    episode_gap: int = 8
    # An episode needs at least this many flagged points to count as a structural break.
    min_episode_points: int = 3


@dataclass(frozen=True, kw_only=True)
class CVSettings:
    """Sliding-window time-series cross-validation."""

    window: int = 417
    step: int = 1


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """The hyperparameter space searched by the tuner (local and SageMaker HPO)."""

    use_counterfactual_data: tuple[int, ...] = (0, 1)
    detrend: tuple[int, ...] = (0, 1)
    deseasonalize: tuple[int, ...] = (0, 1)
    fourier_k: tuple[int, ...] = tuple(range(1, 11))
    # Model families searched (engine/families/registry.py). "arima_fourier" (statsforecast AutoARIMA
    # with Fourier regressors) and "tbats" are available but not defaults: each costs seconds per CV
    # split on weekly data, and "harmonic_arima" already is a regression on Fourier terms with ARIMA
    # errors, batched over the splits. "arima" (seasonal ARIMA) offers candidates for seasons up to 24
    # only (monthly, quarterly: about a second per split), none for weekly data.
    families: tuple[str, ...] = ("harmonic_arima", "seasonal_naive", "ets", "theta", "mstl", "arima")
    # Training history of every family that fits one, itself tuned: the CV window, or all history before
    # the origin (each family's whole search on each).
    histories: tuple[str, ...] = ("window", "all")
    # Families fitted on the CV window only, whatever `histories` holds (an empty list: none). Seasonal
    # ARIMA, ARIMA+Fourier and TBATS for their cost (all history costs about 9 s per seasonal ARIMA fit on
    # a long monthly series); the harmonic family because on 51 public series outside the accuracy
    # benchmark its all-history fits made the default rule's test MASE 0.9% worse
    # (bench/results/selection_validation_harmonic_all.md).
    window_only: tuple[str, ...] = ("harmonic_arima", "arima_fourier", "tbats", "arima")
    # The scale the statsforecast families fit on, itself tuned: the log of the series, or the series
    # itself ("raw"; its forecast is mapped to the log scale by matching a log-normal's mean and
    # variance, see engine/families/sf.py). Neither wins everywhere: a level that moves additively
    # favours "raw", growth in proportion favours "log".
    scales: tuple[str, ...] = ("log", "raw")
    # Every candidate of every family is scored on the same CV splits: at most this many, evenly
    # thinned from the sliding-window grid (the costly families' cost is per split).
    selection_splits: int = 30
    # Combinations that compete: equal weights of the best k families' best candidates, for each k.
    combination_sizes: tuple[int, ...] = (2, 3)
    # What is served: "equal_top", equal weights of the best `serve_top` members (each family and
    # history's best candidate, ranked by the objective), or "lowest", the lowest objective among
    # every candidate and combination (also what "equal_top" serves when fewer members fit). On 51
    # public series outside the accuracy benchmark, equal top 3 scored a geometric mean test MASE 2%
    # below "lowest" (bench/results/selection_validation.md): the lowest of near-ties is noise.
    serve: str = "equal_top"
    serve_top: int = 3

    def usable_fourier_k(self, season_length: float) -> tuple[int, ...]:
        """The Fourier orders this season length can carry (K <= (season_length - 1) / 2); K = 0 alone
        (no Fourier terms) for a season too short to carry one pair (no season, or 2 periods)."""
        if max_fourier_k(season_length) < 1:
            return (0,)
        return tuple(k for k in sorted(set(self.fourier_k)) if k <= max_fourier_k(season_length))

    def usable_deseasonalize(self, season_length: float) -> tuple[int, ...]:
        """``deseasonalize``'s values this season can use: 0 alone with no season (no dummies to add)."""
        return self.deseasonalize if season_period(season_length) > 1 else (0,)

    def candidates(self, season_length: float) -> list[dict[str, int]]:
        """Every usable combination, in a stable order."""
        return [
            {"use_counterfactual_data": c, "detrend": d, "deseasonalize": s, "fourier_k": k}
            for c in self.use_counterfactual_data
            for d in self.detrend
            for s in self.usable_deseasonalize(season_length)
            for k in self.usable_fourier_k(season_length)
        ]

    def parameter_ranges(self) -> dict[str, Any]:
        """The SageMaker tuning job's ParameterRanges for one series: one categorical, the family. A trial
        scores every candidate of its family on the selection splits (``engine.tuning.score_candidates``)
        and the Select job merges the trials as the local tune does, so a Grid search over the family
        covers the whole space, one training job per family; every range a Grid search takes is
        categorical. https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ParameterRanges.html
        """
        return {"CategoricalParameterRanges": [{"Name": "family", "Values": list(self.families)}],
                "IntegerParameterRanges": [], "ContinuousParameterRanges": []}


# The model families (engine/families/registry.py maps each name to its module; a test checks they
# agree), each with the global choices its candidates may vary along (``Settings.family_choices``: the
# history only outside ``search.window_only``): a panel's tuning searches a history or a scale only where
# some family of the panel varies along it (tests/engine/test_families.py checks these against every
# family's candidates).
FAMILY_CHOICES: dict[str, tuple[str, ...]] = {
    "harmonic_arima": ("history",), "seasonal_naive": (), "ets": ("history", "scale"), "theta": ("history", "scale"),
    "mstl": ("history", "scale"), "arima_fourier": ("history", "scale"), "tbats": ("history", "scale"),
    "arima": ("history", "scale"),
    "global_ar": ("history",), "global_ar_drift": ("history",), "ces": ("history", "scale"),
    "thief": ("history", "scale")}
FAMILY_NAMES = tuple(FAMILY_CHOICES)
# What some families need of the season and the CV window to offer a candidate (``family_needs``): seasonal
# ARIMA up to monthly seasons; temporal hierarchies (thief) of whole seasons, their top level at least 7
# values (statsforecast's AutoETS refuses n <= 6).
ARIMA_MAX_SEASON = 24
THIEF_MAX_SEASON = 24
THIEF_MIN_SEASONS = 7
# The histories and scales a family may fit on.
HISTORIES = ("window", "all")
SCALES = ("log", "raw")
# A panel's global family choice: each series chooses its own; the family name of a combination.
PER_SERIES = "per_series"
COMBINATION = "combination"
# What every search minimises, one series' candidates and a panel's global choices alike: CV MASE, each
# split scaled by its own in-window seasonal-naive MAE, so every split counts alike whatever the
# series' level (CV MSE let the latest, largest splits of a growing series decide; chosen on the
# selection validation suite, bench/results/selection_validation.md).
OBJECTIVE = "cv_mase"
# search.serve's rules: equal weights of the best members, or the lowest objective.
EQUAL_TOP = "equal_top"
LOWEST = "lowest"
SERVE_RULES = (EQUAL_TOP, LOWEST)
PAIR = "+"  # joins the two families of a panel's pair choice ("ets+theta")
# A panel's global choices: the family, and the history and scale of the statsforecast families.
CHOICE_KEYS = ("family", "history", "scale")
# The harmonic model's tuned flags (each a 0/1 choice of its search space).
TUNED_FLAGS = ("use_counterfactual_data", "detrend", "deseasonalize")


# Coverage levels every evaluation scores, whatever gate.coverage_levels: a model package's metadata
# records them (stacks/pipeline_definition.py) and the panel CV reports them.
RECORDED_LEVELS = (0.8, 0.95)


def coverage_key(level: float) -> str:
    """A level's coverage in metrics: ``coverage_80`` for 0.8."""
    return f"coverage_{round(level * 100):d}"


@dataclass(frozen=True, kw_only=True)
class GateSettings:
    """When a challenger may replace the approved model."""

    # The challenger's backtest MASE must be below the champion's by at least this fraction.
    min_improvement: float = 0.01
    # Origins of the rolling backtest used to compare challenger, champion and seasonal naive.
    eval_origins: int = 26
    # The central intervals exported with the forecast (forecast.csv's lower_NN, upper_NN); evaluation
    # scores their coverage, and RECORDED_LEVELS' always.
    coverage_levels: tuple[float, ...] = (0.8, 0.95)

    @property
    def scored_levels(self) -> tuple[float, ...]:
        """The levels whose backtest coverage evaluation reports: ``coverage_levels`` and ``RECORDED_LEVELS``."""
        return tuple(sorted({*self.coverage_levels, *RECORDED_LEVELS}))


FILL_METHODS = ("none", "interpolate", "value", "median", "mean")
SELECTIONS = ("per_series", "global")
AMAZON_FORECAST_COLUMNS = ("item_id", "timestamp", "target_value")
# An item id (a series' key in a panel upload, an artifact and a request): 1..256 characters, no
# control characters (Amazon Forecast's item_id is a string of at most 256 characters).
MAX_ITEM_ID_LENGTH = 256
# Characters an item id must not hold, as a regular-expression class in \\u escapes (Python's and JSON
# Schema's alike): C0, DEL and C1 controls, and the invisible ones that make two ids look the same or
# reorder what is shown (zero-width, direction marks, embeddings and isolates, line and paragraph
# separators, word joiners, the byte-order mark).
ITEM_ID_INVISIBLE = ("\\u0000-\\u001f\\u007f-\\u009f\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064"
                     "\\u2066-\\u2069\\ufeff")
_INVISIBLE = re.compile(f"[{ITEM_ID_INVISIBLE}]")
_SURROGATES = re.compile("[\\ud800-\\udfff]")  # lone surrogates (JSON \\ud800 escapes): not UTF-8


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's terms ("an array", "null", ...), for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__)


def item_id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid item id (None when it is); the one rule for data, artifact and API."""
    if not isinstance(value, str):
        return f"an item id must be a string, got {json_kind(value)}"
    if not value:
        return "an item id must not be empty"
    if len(value) > MAX_ITEM_ID_LENGTH:
        return f"an item id has at most {MAX_ITEM_ID_LENGTH} characters, got {len(value)}"
    if _INVISIBLE.search(value):
        return (f"an item id must not hold control or invisible characters (zero-width, direction marks, "
                f"separators), got {value[:40]!r}")
    if _SURROGATES.search(value):
        return f"an item id must be valid Unicode, without surrogates (U+D800..U+DFFF), got {value[:40]!r}"
    return None


@dataclass(frozen=True, kw_only=True)
class SeriesSettings:
    """Many series in one upload: a long ``item_id,timestamp,value`` file (docs/panel.md)."""

    # More series than this refuses the upload.
    max_series: int = 100_000
    # Missing periods inside a series ("middle") and between its last timestamp and the panel's
    # ("end"), after data.max_gap_periods: "none" refuses them (as for one series), "interpolate"
    # (log-linear), "value" (fill_value), "median" or "mean" (of the series), like Amazon Forecast's
    # filling options. Leading missing values start the series later (Amazon Forecast's frontfill none).
    fill_middle: str = "none"
    fill_end: str = "none"
    fill_value: float | None = None
    # Column order of a headerless file, as in an Amazon Forecast dataset schema.
    columns: tuple[str, ...] = AMAZON_FORECAST_COLUMNS
    # Model choice: a family (or combination) per series, or one global specification for all.
    selection: str = "per_series"
    # Families each series chooses from (engine/families/registry.py); "global_ar" is an
    # autoregression per series shrunk toward one fitted on every series (engine/families/global_ar.py),
    # "global_ar_drift" the same on each series less its mean growth.
    families: tuple[str, ...] = ("seasonal_naive", "ets", "theta", "global_ar", "global_ar_drift")
    # Panel CV: cutoffs shared by every series (PanelSplit), ``cutoff_step`` periods apart.
    cutoffs: int = 4
    cutoff_step: int = 0  # 0: the horizon
    # The tuning of the global choice (family, history, scale) scores each choice on at least this
    # many cutoffs: on a few cutoffs the lowest score is a noisy pick (docs/panel.md, "Tuning cutoffs").
    tune_cutoffs: int = 8
    # The model of a series too short for the families, reported with the reason.
    fallback: str = "seasonal_naive"
    # The ETS models a panel's series choose among, as statsforecast's AutoETS ``model`` code (error,
    # trend, season; Z: chosen by AICc). On the log scale an error left to the AICc is additive, so the
    # default "ZZZ" fits as "AZZ" there (families/sf.py, model_code); on the raw scale "AZZ" fits in
    # about a third of the time of "ZZZ".
    ets_model: str = "ZZZ"
    # Training shards in the cloud: one SageMaker instance each (ShardedByS3Key).
    instances: int = 1
    # The outlier and break rules per series (robust STL, as for one series; 13-21 CPU ms a monthly
    # series, bench/results/panel_processing.md, spread over the run's jobs); false keeps every
    # series as observed.
    preprocess: bool = True


# The deployment's training jobs at once in a tuning job, as the starter Lambda reads it
# (stacks/settings.py TuningSettings.max_parallel_jobs).
TUNING_PARALLEL_ENV = "TUNING_MAX_PARALLEL_JOBS"
# The serving limit's environment variable (the endpoint's and the invoke Lambda's) and its range.
MAX_PERIODS_ENV = "FORECAST_MAX_PERIODS"
MAX_PERIODS_LIMIT = 10_000
# The served model package's version, which the deploy state machine sets on the SageMaker model (a
# training job cannot know it: the registry numbers the package after training).
MODEL_VERSION_ENV = "FORECAST_MODEL_VERSION"


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """The serving app."""

    # Largest `periods` a request may ask for (serving, the invoke Lambda and the API model).
    max_periods: int = 104


# The HTTP port a server listens on unless told another (``--port``; SageMaker's SAGEMAKER_BIND_TO_PORT).
# Not a run-document key: a run does not choose where a model is served.
DEFAULT_PORT = 8080


def max_periods_from_env(environ: Mapping[str, str]) -> int:
    """``FORECAST_MAX_PERIODS`` as every server reads it (unset: the default); a bad value is a
    SettingsError naming the variable, never a per-request failure."""
    raw = (environ.get(MAX_PERIODS_ENV) or "").strip()
    if not raw:
        return ServeSettings().max_periods
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PERIODS_LIMIT:
        raise SettingsError([f"{MAX_PERIODS_ENV}={raw!r}: expected an integer in 1..{MAX_PERIODS_LIMIT}"],
                            "environment")
    return int(raw)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The run document; defaults are the bundled weekly gasoline series'."""

    data: DataSettings = field(default_factory=DataSettings)
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    cv: CVSettings = field(default_factory=CVSettings)
    search: SearchSpace = field(default_factory=SearchSpace)
    gate: GateSettings = field(default_factory=GateSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    series: SeriesSettings = field(default_factory=SeriesSettings)

    # ---- derived ---------------------------------------------------------------------------------
    def min_observations(self) -> int:
        """Rows a series needs: the one rule, used by validation, processing and every message.

        The evaluation's first backtest origin (``eval_origins`` + ``horizon`` before the end) must see a
        CV window, then enough CV splits with a local error scale (``SCALE_MIN_ERRORS`` + 1 earlier
        one-step errors, ``cv.step`` apart) to calibrate two of them, each scored ``horizon`` ahead.
        """
        return (self.cv.window + 2 * self.data.horizon + self.gate.eval_origins
                + (SCALE_MIN_ERRORS + 1) * self.cv.step - 1)

    def min_observations_rule(self) -> str:
        scaling = (SCALE_MIN_ERRORS + 1) * self.cv.step - 1
        return (f"at least {self.min_observations()} observations: CV window {self.cv.window} + 2 x horizon "
                f"{self.data.horizon} + {self.gate.eval_origins} evaluation origins + {scaling} rows to scale "
                f"the first errors ({SCALE_MIN_ERRORS + 1} CV steps of {self.cv.step}, less one)")

    def candidates(self) -> list[dict[str, int]]:
        return self.search.candidates(self.data.season_length)

    def parameter_ranges(self) -> dict[str, Any]:
        """The tuning job's ranges for one series: the families that offer a model for this season and
        CV window (``offered_families``; a trial of another would score nothing)."""
        ranges = self.search.parameter_ranges()
        ranges["CategoricalParameterRanges"][0]["Values"] = self.offered_families()
        return ranges

    def offered_families(self) -> list[str]:
        """``search.families`` but those that offer no model for this season and CV window."""
        return [name for name in self.search.families if not family_needs(name, self)]

    def panel_families(self) -> list[str]:
        """A panel's global ``family`` choice (engine/panel_fit.py): each series its own
        (``per_series``), one of ``series.families`` for all, their combination (two or more), or
        the equal-weight pair of two of them other than the fallback (``panel_pairs``)."""
        names = list(self.series.families)
        return [PER_SERIES, *names, *([COMBINATION] if len(names) > 1 else []), *self.panel_pairs()]

    def panel_pairs(self) -> dict[str, tuple[str, str]]:
        """The panel's pair choices, ``"a+b"`` -> (a, b): every two of ``series.families`` but the
        fallback (the floor, not a member), unless the pair is the whole combination already."""
        names = list(self.series.families)
        members = [n for n in names if n != self.series.fallback]
        return {PAIR.join(p): p for i, a in enumerate(members) for p in ((a, b) for b in members[i + 1:])
                if set(p) != set(names)}

    def tuning(self) -> "Settings":
        """The settings a panel's tuning fits with (the local search and every tuning job's trial):
        ``series.cutoffs`` raised to ``series.tune_cutoffs``."""
        cutoffs = max(self.series.cutoffs, self.series.tune_cutoffs)
        return replace(self, series=replace(self.series, cutoffs=cutoffs))

    def panel_histories(self) -> list[str]:
        """The histories a panel's tuning searches: ``search.histories``, or its first alone where no
        family of the panel varies along it (the others would score the same fits again)."""
        return self._panel_values("history", [h for h in HISTORIES if h in self.search.histories])

    def panel_scales(self) -> list[str]:
        """The scales a panel's tuning searches (as ``panel_histories``)."""
        return self._panel_values("scale", [s for s in SCALES if s in self.search.scales])

    def _panel_values(self, key: str, allowed: list[str]) -> list[str]:
        names = {*self.series.families, self.series.fallback}
        return allowed if any(key in self.family_choices(n) for n in names) else allowed[:1]

    def family_choices(self, name: str) -> tuple[str, ...]:
        """What a family's candidates vary along under these settings: ``FAMILY_CHOICES``, but the
        history only for a family outside ``search.window_only``."""
        choices = FAMILY_CHOICES.get(name, ())
        return tuple(c for c in choices if c != "history") if name in self.search.window_only else choices

    def family_histories(self, name: str) -> tuple[str, ...]:
        """The training histories a family's candidates fit on: ``search.histories``, or the window alone
        for a family of ``search.window_only``."""
        if name in self.search.window_only:
            return (HISTORIES[0],)
        return tuple(h for h in HISTORIES if h in self.search.histories)

    def panel_parameter_ranges(self) -> dict[str, Any]:
        """The tuning job's ParameterRanges for a panel: the history and the scale, categoricals (a Grid
        over them; each trial scores every ``family`` choice at its history and scale off one per-series
        fit, pipeline/panel_tuning.py); the starter Lambda renders them (standard library only).

        https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CategoricalParameterRange.html
        """
        return {
            "CategoricalParameterRanges": [{"Name": "history", "Values": self.panel_histories()},
                                           {"Name": "scale", "Values": self.panel_scales()}],
            "IntegerParameterRanges": [],
            "ContinuousParameterRanges": [],
        }

    def tuning_grid(self, *, panel: bool) -> int:
        """The number of trials of the tuning job's Grid: one series' families, or a panel's histories x
        scales (every combination of the categorical ranges)."""
        ranges = (self.panel_parameter_ranges() if panel else self.parameter_ranges())["CategoricalParameterRanges"]
        return math.prod(len(r["Values"]) for r in ranges)

    # ---- documents -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def merged(self, raw: Mapping[str, Any], source: str = "settings", *, validate: bool = True) -> "Settings":
        """These settings overridden by a (partial) document; unknown keys and wrong types are errors."""
        if not isinstance(raw, Mapping):
            raise SettingsError([f"the document must be a JSON object, got {_kind(raw)}"], source)
        problems: list[str] = []
        updates: dict[str, Any] = {}
        sections = {f.name for f in fields(self)}
        for name in sorted(set(raw) - sections):
            problems.append(f"{name}: unknown section (expected one of {sorted(sections)})")
        for name in sorted(set(raw) & sections):
            current, section = getattr(self, name), raw[name]
            if not isinstance(section, Mapping):
                problems.append(f"{name}: expected an object, got {_kind(section)}")
                continue
            hints = typing.get_type_hints(type(current))
            allowed = {f.name for f in fields(current)}
            values: dict[str, Any] = {}
            for key in sorted(section):
                if key not in allowed:
                    problems.append(f"{name}.{key}: unknown setting (expected one of {sorted(allowed)})")
                    continue
                try:
                    values[key] = _coerce(section[key], hints[key])
                except TypeError as err:
                    problems.append(f"{name}.{key}: {err}")
            updates[name] = replace(current, **values)
        if problems:
            raise SettingsError(problems, source)
        merged = replace(self, **updates)
        if validate:
            merged.validate(source)
        return merged

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "settings") -> "Settings":
        """A document over the engine's defaults."""
        return cls().merged(raw, source)

    @classmethod
    def from_file(cls, path: str | Path) -> "Settings":
        return cls().merged(read_document(path), str(path))

    def validate(self, source: str = "settings") -> None:
        """Range and consistency rules; raises `SettingsError` naming every bad key."""
        problems: list[str] = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        d, p, cv, g, s = self.data, self.preprocess, self.cv, self.gate, self.serve
        try:
            parse_freq(d.freq)
        except ValueError as err:
            problems.append(f"data.freq: {err}")
        check(math.isfinite(d.season_length) and d.season_length >= 1,
              f"data.season_length: must be a number >= 1 (1: no season), got {d.season_length:g}")
        check(d.horizon >= 1, f"data.horizon: must be >= 1, got {d.horizon}")
        check(d.horizon <= s.max_periods, f"data.horizon: {d.horizon} exceeds serve.max_periods {s.max_periods}")
        check(1024 <= d.max_file_bytes <= 5 * 1024**3, "data.max_file_bytes: must be in 1024..5 GiB")
        check(0 <= d.max_gap_periods <= 1000, "data.max_gap_periods: must be in 0..1000")
        check(math.isfinite(p.iqr_multiplier) and p.iqr_multiplier > 0, "preprocess.iqr_multiplier: must be > 0")
        for key in ("break_start", "break_end"):
            value = getattr(p, key)
            check(value is None or _is_iso_date(value), f"preprocess.{key}: expected an ISO date (YYYY-MM-DD) or null")
        if p.break_start and p.break_end and _is_iso_date(p.break_start) and _is_iso_date(p.break_end):
            check(p.break_start <= p.break_end,  # ISO dates order as text
                  f"preprocess.break_end: {p.break_end} is before preprocess.break_start {p.break_start}")
        check(p.episode_gap >= 1 and p.min_episode_points >= 1,
              "preprocess.episode_gap and preprocess.min_episode_points: must be >= 1")
        check(cv.window >= 8, f"cv.window: must be >= 8, got {cv.window}")
        check(cv.step >= 1, f"cv.step: must be >= 1, got {cv.step}")
        for key in TUNED_FLAGS:
            values = getattr(self.search, key)
            check(_distinct_subset(values, (0, 1)), f"search.{key}: must be a non-empty subset of [0, 1], no repeats")
        check(bool(self.search.fourier_k) and min(self.search.fourier_k) >= 1,
              "search.fourier_k: must be a non-empty list of integers >= 1")
        families = self.search.families
        check(_distinct_subset(families, FAMILY_NAMES),
              f"search.families: must be distinct names from {list(FAMILY_NAMES)}, got {list(families)}")
        check(_distinct_subset(self.search.histories, HISTORIES),
              f"search.histories: must be a non-empty subset of {list(HISTORIES)}, no repeats")
        check(not self.search.window_only or _distinct_subset(self.search.window_only, FAMILY_NAMES),
              f"search.window_only: must be distinct family names of {list(FAMILY_NAMES)}, or empty")
        check(_distinct_subset(self.search.scales, SCALES),
              f"search.scales: must be a non-empty subset of {list(SCALES)}, no repeats")
        check(self.search.selection_splits >= 5, "search.selection_splits: must be >= 5")
        check(all(k >= 2 for k in self.search.combination_sizes), "search.combination_sizes: each must be >= 2")
        check(self.search.serve in SERVE_RULES, f"search.serve: must be one of {list(SERVE_RULES)}")
        check(self.search.serve_top >= 2, "search.serve_top: must be >= 2")
        check(d.max_rows >= self.min_observations(),
              f"data.max_rows: {d.max_rows} rows are used at most, but these settings need "
              f"{self.min_observations_rule()}; lower cv.window, data.horizon or gate.eval_origins, or raise "
              "data.max_rows")
        if "harmonic_arima" in families and self.search.fourier_k and math.isfinite(d.season_length) \
                and d.season_length >= 1:
            check(bool(self.search.usable_fourier_k(d.season_length)),
                  f"search.fourier_k: no value fits data.season_length {d.season_length:g} "
                  f"(K must be <= {max_fourier_k(d.season_length)})")
        check(0 <= g.min_improvement < 1, f"gate.min_improvement: must be in [0, 1), got {g.min_improvement:g}")
        check(g.eval_origins >= 1, f"gate.eval_origins: must be >= 1, got {g.eval_origins}")
        check(bool(g.coverage_levels) and all(0 < c < 1 for c in g.coverage_levels),
              "gate.coverage_levels: must be a non-empty list of numbers in (0, 1)")
        keys = [coverage_key(c) for c in g.coverage_levels if 0 < c < 1]
        check(len(set(keys)) == len(keys), "gate.coverage_levels: two levels name the same columns"
              f" ({', '.join(sorted({k for k in keys if keys.count(k) > 1}))}: levels are whole percents)")
        check(1 <= s.max_periods <= MAX_PERIODS_LIMIT,
              f"serve.max_periods: must be in 1..{MAX_PERIODS_LIMIT}, got {s.max_periods}")
        problems += self.series_problems()
        if problems:
            raise SettingsError(problems, source)


    def series_problems(self) -> list[str]:
        """The ``series`` section's rules."""
        m = self.series
        rules = [
            (1 <= m.max_series <= 10_000_000, f"series.max_series: must be in 1..10000000, got {m.max_series}"),
            (m.fill_middle in FILL_METHODS, f"series.fill_middle: must be one of {list(FILL_METHODS)}, got {m.fill_middle!r}"),
            (m.fill_end in FILL_METHODS, f"series.fill_end: must be one of {list(FILL_METHODS)}, got {m.fill_end!r}"),
            ("value" not in (m.fill_middle, m.fill_end)
             or (m.fill_value is not None and MIN_ABS_VALUE <= m.fill_value <= MAX_ABS_VALUE),
             f"series.fill_value: a number in [{MIN_ABS_VALUE:g}, {MAX_ABS_VALUE:g}] (the data's range) is needed "
             f"when a fill method is \"value\", got {m.fill_value}"),
            (sorted(m.columns) == sorted(AMAZON_FORECAST_COLUMNS),
             f"series.columns: must order {list(AMAZON_FORECAST_COLUMNS)}, got {list(m.columns)}"),
            (m.selection in SELECTIONS, f"series.selection: must be one of {list(SELECTIONS)}, got {m.selection!r}"),
            (_distinct_subset(m.families, FAMILY_NAMES),
             f"series.families: must be distinct names from {list(FAMILY_NAMES)}, got {list(m.families)}"),
            (1 <= m.cutoffs <= 52, f"series.cutoffs: must be in 1..52, got {m.cutoffs}"),
            (1 <= m.tune_cutoffs <= 52, f"series.tune_cutoffs: must be in 1..52, got {m.tune_cutoffs}"),
            (m.cutoff_step >= 0, f"series.cutoff_step: must be >= 0 (0: the horizon), got {m.cutoff_step}"),
            (m.fallback in FAMILY_NAMES, f"series.fallback: must be one of {list(FAMILY_NAMES)}, got {m.fallback!r}"),
            (1 <= m.instances <= 100, f"series.instances: must be in 1..100, got {m.instances}"),
            (len(m.ets_model) == 3 and m.ets_model[0] in "AMZ" and m.ets_model[1] in "NAMZ"
             and m.ets_model[2] in "NAMZ",
             f"series.ets_model: must be an AutoETS code (error A/M/Z, trend N/A/M/Z, season N/A/M/Z), "
             f"got {m.ets_model!r}"),
        ]
        return [message for ok, message in rules if not ok]


# ---- layers and what the data implies -----------------------------------------------------------

# Derived when a layer does not set them (docs/design.md, "The run document"):
HORIZON_MAX = 26  # horizon: one season, at most this many periods ...
NO_SEASON_HORIZON = 6  # ... or with no season (season length 1: yearly data) this many, M3's and M4's yearly
WINDOW_SEASONS = 8  # CV window: this many seasons (417 weeks for weekly data), at least WINDOW_MIN ...
WINDOW_MIN_SEASONS, WINDOW_MIN = 3, 24  # ... and never below max(3 seasons, 24 periods) ...
# ... or with no season this many: the fewest values statsforecast fits a damped-trend ETS on (it refuses
# n <= its parameters + 4 = 9). A yearly series then needs 10 + 2 x 6 + 8 + 13 = 43 observations.
NO_SEASON_WINDOW_MIN = 10
ORIGINS_MAX, ORIGINS_MIN = 26, 8  # evaluation origins: a tenth of the series within these bounds


@dataclass(frozen=True)
class Resolved:
    """A run's settings and which values were derived rather than given (for the report)."""

    settings: Settings
    derived: dict[str, Any]


def resolve(
    layers: Sequence[tuple[str, Mapping[str, Any]]], *, timestamps: Sequence[date] | None = None,
    observations: int | None = None, lines: Sequence[int] | None = None,
) -> Resolved:
    """Merge the layers (name, document) over the engine's defaults; fill what none of them sets
    from the data (frequency from the timestamps, in order, season length from the frequency, horizon,
    CV window and evaluation origins from the season and the length); validate once. ``lines`` (one
    per timestamp) lets a timestamp off the calendar be named with its line."""
    settings = Settings()
    origin: dict[str, str] = {}  # key -> where its value came from: the last layer that set it
    for source, document in layers:
        settings = settings.merged(document, source, validate=False)
        origin |= {f"{section}.{key}": f"from {source}" for section, values in document.items()
                   for key in values}
    given = set(origin)
    derived: dict[str, Any] = {}
    data = settings.data
    if "data.freq" not in given and timestamps:
        try:
            derived["data.freq"] = infer_freq(list(timestamps), lines)
        except ValueError as err:
            raise SettingsError([f"data.freq: {err}"], "data") from err
    freq = derived.get("data.freq", data.freq)
    if "data.freq" in given and timestamps:
        _check_freq_fits(freq, list(timestamps), lines)
    if "data.season_length" not in given and ("data.freq" in given or "data.freq" in derived):
        try:
            derived["data.season_length"] = season_length_for(freq)
        except ValueError as err:
            raise SettingsError([f"data.freq: {err}"], "settings") from err
    season = derived.get("data.season_length", data.season_length)
    if "data.horizon" not in given and season >= 1:
        derived["data.horizon"] = derived_horizon(season)
    horizon = derived.get("data.horizon", data.horizon)
    if observations is not None:
        observations = min(observations, settings.data.max_rows)  # only the latest max_rows are used
        if "data.season_length" in given and season * WINDOW_MIN_SEASONS > observations:  # a short series
            # with a derived season is refused as too short instead, naming the minimum length
            raise SettingsError([f"data.season_length: {season:g} periods is too long for the series: its "
                                 f"{observations} observations hold fewer than {WINDOW_MIN_SEASONS} seasons"], "data")
        origins = settings.gate.eval_origins
        if "gate.eval_origins" not in given:
            origins = derived["gate.eval_origins"] = max(ORIGINS_MIN, min(ORIGINS_MAX, observations // 10))
        if "cv.window" not in given and season >= 1:
            # What the length allows, never below the lowest window: too short a series is then refused
            # by `check_length` (the starter) or by the input contract (processing), naming the rule.
            period = season_period(season)
            lowest = max(WINDOW_MIN_SEASONS * period, WINDOW_MIN) if period > 1 else NO_SEASON_WINDOW_MIN
            rest = 2 * horizon + origins + (SCALE_MIN_ERRORS + 1) * settings.cv.step - 1
            target = max(round(WINDOW_SEASONS * season), WINDOW_MIN)
            derived["cv.window"] = max(lowest, min(target, observations - rest))
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in derived.items():
        section, name = key.split(".")
        overrides.setdefault(section, {})[name] = value
    try:
        return Resolved(settings.merged(overrides, "settings"), derived)
    except SettingsError as err:  # name the layer behind each refused key
        origin |= {key: "derived from the data" for key in derived}
        raise SettingsError([_with_origin(problem, origin) for problem in err.problems], err.source) from None


def derived_horizon(season_length: float) -> int:
    """The horizon when no layer sets it: one season, at most ``HORIZON_MAX`` periods; with no season,
    ``NO_SEASON_HORIZON``."""
    period = season_period(season_length)
    return min(period, HORIZON_MAX) if period > 1 else NO_SEASON_HORIZON


def _with_origin(problem: str, origin: Mapping[str, str]) -> str:
    """``problem`` ("section.key: ...") followed by where its key's value came from ("from <layer>" or
    "derived from the data"), when known."""
    key = problem.split(":", 1)[0]
    return f"{problem} ({key} {origin[key]})" if key in origin else problem


def family_needs(name: str, settings: Settings) -> str:
    """What family ``name`` needs of ``settings`` to offer a candidate, or "" when it offers one (the
    families ask it too, so the starter Lambda, standard library only, knows what they will offer)."""
    m = settings.data.season_length
    season = round(m)
    if name == "harmonic_arima" and not settings.search.usable_fourier_k(m):
        return "a season long enough for one of search.fourier_k's Fourier orders"
    if name == "mstl" and season_period(m) < 2:
        return "a season (a data.season_length of 2 or more): MSTL decomposes one"
    if name == "arima_fourier" and max_fourier_k(m) < 1:
        return "a season long enough for one Fourier pair"
    if name == "arima" and season > ARIMA_MAX_SEASON:
        return f"a season of at most {ARIMA_MAX_SEASON} periods"
    if name == "thief" and not (abs(m - season) < 1e-9 and 2 <= season <= THIEF_MAX_SEASON
                                and settings.cv.window >= THIEF_MIN_SEASONS * season):
        return (f"a whole season of 2 to {THIEF_MAX_SEASON} periods and a cv.window of at least "
                f"{THIEF_MIN_SEASONS} seasons")
    return ""


def unoffered(names: Sequence[str], settings: Settings) -> list[str]:
    """Why each of ``names`` that offers no model for these settings (its season or its window) does not."""
    return [f"{name!r} offers no model for data.season_length {settings.data.season_length:g} and cv.window "
            f"{settings.cv.window}; it needs {family_needs(name, settings)}"
            for name in names if family_needs(name, settings)]


def check_offered(settings: Settings, *, panel: bool) -> None:
    """Refuse, naming the key, families that offer no model for these settings, before any job runs:
    one series, when no family of ``search.families`` offers one (the others are left out: the defaults
    list ``arima``, which weekly data does not get); a panel, any of ``series.families`` or
    ``series.fallback`` that offers none."""
    if panel:
        problems = [f"series.families: {p}" for p in unoffered(settings.series.families, settings)]
        problems += [f"series.fallback: {p}" for p in unoffered((settings.series.fallback,), settings)]
    elif not settings.offered_families():
        problems = ["search.families: no family offers a model for these settings: "
                    + "; ".join(unoffered(settings.search.families, settings))]
    else:
        problems = []
    if problems:
        raise SettingsError(problems)


def check_length(settings: Settings, observations: int) -> None:
    """Too short a series for these settings is a SettingsError naming the minimum and its rule."""
    if observations < settings.min_observations():
        raise SettingsError([f"the series has {observations} observations; it needs "
                             f"{settings.min_observations_rule()}"], "data")


def _check_freq_fits(freq: str, timestamps: list[date], lines: Sequence[int] | None = None) -> None:
    """A given frequency the data does not follow is a settings error (named before any job runs), naming
    the first timestamp off it, its line and the date expected."""
    try:
        calendar = parse_freq(freq)
    except ValueError as err:
        raise SettingsError([f"data.freq: {err}"], "settings") from err
    off = off_calendar(calendar, timestamps, lines)
    if off is not None:
        try:
            hint = f"; the data looks like {infer_freq(timestamps)}"
        except ValueError:
            hint = ""
        raise SettingsError([f"data.freq: the data does not follow {freq}: {off}{hint}"], "settings")


def read_document(path: str | Path, max_bytes: int = SETTINGS_MAX_BYTES) -> dict[str, Any]:
    """Read a settings file: size-checked, JSON-parsed; errors name the file, line and column."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SettingsError([f"file is {size} bytes; the limit is {max_bytes}"], str(path))
        raw = path.read_bytes()
    except OSError as err:  # missing, a folder, unreadable
        raise SettingsError([f"cannot read: {err.strerror or err}"], str(path)) from err
    return parse_document(raw, str(path), max_bytes)


def parse_document(raw: bytes, source: str = "settings", max_bytes: int = SETTINGS_MAX_BYTES) -> dict[str, Any]:
    """Parse a settings document's bytes (a JSON object)."""
    if len(raw) > max_bytes:
        raise SettingsError([f"document is {len(raw)} bytes; the limit is {max_bytes}"], source)
    try:
        # a byte-order mark is ignored (RFC 8259 §8.1 allows it), as for the CSV
        document = json.loads(raw.decode("utf-8-sig"), parse_constant=_not_json, parse_int=_json_int,
                              object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as err:
        raise SettingsError([f"not UTF-8 text (byte {err.start})"], source) from err
    except json.JSONDecodeError as err:
        raise SettingsError([f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"], source) from err
    except _Refused as err:
        raise SettingsError([f"invalid JSON: {err}"], source) from None
    except RecursionError:
        raise SettingsError(["invalid JSON: nested too deeply"], source) from None
    if not isinstance(document, dict):
        raise SettingsError([f"the document must be a JSON object, got {_kind(document)}"], source)
    return document


class _Refused(ValueError):
    """What strict JSON refuses that Python's parser takes."""


def _not_json(constant: str) -> Any:
    raise _Refused(f"{constant} is not a JSON number")


def _json_int(text: str) -> int | float:
    """A JSON integer; one of more than ``MAX_INT_DIGITS`` digits is read as a float (``inf`` past its
    range), which the key's own check then refuses by name, as it does ``1e400``. (Python refuses to
    convert more than 4300 digits to an int at all.)"""
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else float(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Refused(f"key {repeated!r} appears twice in one object")
    return document


def settings_file_for(data_name: str) -> str:
    """The settings file that goes with an upload: ``x.csv`` -> ``x.settings.json``."""
    stem = data_name[:-4] if data_name.lower().endswith(".csv") else data_name
    return stem + SETTINGS_SUFFIX


# ---- typing --------------------------------------------------------------------------------------

def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the annotated type, or TypeError saying what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {_kind(value)}")
        return tuple(_coerce(v, args[0]) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, float) or not math.isfinite(value) or value != int(value):
            raise TypeError(f"expected an integer, got {_kind(value)} {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {_kind(value)} {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer past float's range
            raise TypeError("expected a number, got an integer out of range") from None
        if not math.isfinite(number):
            raise TypeError(f"expected a number, got {_kind(value)} {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {_kind(value)}")
        return value
    raise TypeError(f"unsupported setting type {hint}")


def _distinct_subset(values: Sequence[Any], allowed: Sequence[Any]) -> bool:
    """Non-empty, each value allowed, none twice (a repeat would score the same candidates twice)."""
    return bool(values) and set(values) <= set(allowed) and len(set(values)) == len(values)


def _is_iso_date(text: str) -> bool:
    from datetime import date

    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10
