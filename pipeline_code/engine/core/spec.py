"""The model specification: what the tuner searches and the artifact records (standard library only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

AR_ORDER_MAX = 10


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Harmonic regression (K Fourier pairs of period ``season_length``) with ARIMA(p, d, 0) errors.

    ``detrend`` adds a linear trend (a drift when the errors are differenced); ``deseasonalize`` adds
    seasonal dummies of period round(season_length) (the classical seasonal profile). With no season
    (``season_period`` 1: yearly data) there are neither: K is 0 and the model is a linear trend (or a
    level) with ARIMA errors. ``ar_order`` and
    ``diff`` of the errors are chosen per fit (AICc and a KPSS test) unless fixed here.
    ``use_counterfactual_data`` picks the training data: the series with its structural-break episode
    replaced by the counterfactual (1) or as observed (0).
    """

    fourier_k: int = 3
    detrend: bool = True
    deseasonalize: bool = False
    use_counterfactual_data: bool = True
    season_length: float = 365.25 / 7
    ar_order_max: int = AR_ORDER_MAX
    diff: int | None = None

    def __post_init__(self) -> None:
        if not self.season_length >= 1:
            raise ValueError(f"season_length must be >= 1 (1: no season), got {self.season_length}")
        if self.deseasonalize and self.seasonal_period < 2:
            raise ValueError(f"deseasonalize needs a season; season_length {self.season_length:g} has none")
        if not 0 <= self.fourier_k <= max_fourier_k(self.season_length):
            raise ValueError(
                f"fourier_k={self.fourier_k} is outside 0..{max_fourier_k(self.season_length)}"
                f" for season_length {self.season_length:g}"
            )
        if self.diff not in (None, 0, 1):
            raise ValueError(f"diff must be 0, 1 or None (auto), got {self.diff}")
        if not 0 <= self.ar_order_max <= 24:
            raise ValueError(f"ar_order_max must be in 0..24, got {self.ar_order_max}")

    @property
    def seasonal_period(self) -> int:
        """The integer period of the seasonal dummies."""
        return season_period(self.season_length)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelSpec":
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        for flag in ("detrend", "deseasonalize", "use_counterfactual_data"):
            if flag in known:
                known[flag] = bool(int(known[flag]))
        for number in ("fourier_k", "ar_order_max"):
            if number in known:
                known[number] = int(known[number])
        if "season_length" in known:
            known["season_length"] = float(known["season_length"])
        if known.get("diff") is not None:
            known["diff"] = int(known["diff"])
        return cls(**known)

    def hyperparameters(self) -> dict[str, int]:
        """The tuned hyperparameters, as the search space names them."""
        return {
            "use_counterfactual_data": int(self.use_counterfactual_data),
            "detrend": int(self.detrend),
            "deseasonalize": int(self.deseasonalize),
            "fourier_k": self.fourier_k,
        }


def season_period(season_length: float) -> int:
    """The integer season every seasonal rule uses (lags, dummies, MASE scale, statsforecast's
    ``season_length``): the nearest integer, 1 when the series has no season (``season_length`` 1, e.g.
    yearly data), where seasonal naive is naive and the MASE scale the one-step naive MAE."""
    return max(1, round(season_length))


def max_fourier_k(season_length: float) -> int:
    """Largest K whose harmonics are distinct and non-degenerate for this period."""
    return max(0, int((season_length - 1) // 2))
