"""The panel artifact (engine/core/panel_artifact.py): round trip, compactness, refusals, merge."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from pipeline_code.engine.core.artifact import ArtifactError
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.panel_artifact import (
    ARRAYS,
    PANEL_JSON,
    SECTIONS,
    PanelModel,
    UnknownItem,
    is_panel,
    merge_panels,
    save_panel,
)

from .panel_models import edit_section, fit_item, panel, pool_calibration, reseal

ITEMS = {"A": "seasonal_naive", "B": "harmonic_arima", "C é/ü": "seasonal_naive", "D": "seasonal_naive"}


@pytest.fixture(scope="module")
def artifacts():
    return pool_calibration({item: fit_item(seed, family) for seed, (item, family) in enumerate(ITEMS.items())})


@pytest.fixture
def folder(tmp_path, artifacts):
    return save_panel(tmp_path / "panel", artifacts, {"name": "panel", "metrics": {"mase": 0.8, "wape": float("nan")}})


def test_round_trip_forecasts_exactly_as_each_items_own_model(folder, artifacts):
    model = PanelModel.load(folder)
    assert is_panel(folder) and model.items == sorted(ITEMS) and len(model) == 4
    assert model.metadata == {"name": "panel", "metrics": {"mase": 0.8, "wape": None}}  # strict JSON
    for item, artifact in artifacts.items():
        stored = model.artifact(item)
        assert stored.document() == artifact.document()
        assert np.array_equal(stored.calibration_errors, artifact.calibration_errors)
        expected = Forecaster(artifact).predict(30, 0.9).records()
        assert model.forecaster(item).predict(30, 0.9).records() == expected
    assert model.forecaster("A") is model.forecaster("A")
    model.check()


def _stored_floats(folder) -> int:
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        return arrays["values"].size


def test_the_pooled_calibration_is_stored_once(folder, artifacts, tmp_path):
    """Equal calibration arrays are stored once (by content, not only by identity); distinct ones each."""
    import copy

    pooled = next(iter(artifacts.values())).calibration_errors
    copies = {item: copy.deepcopy(a) for item, a in artifacts.items()}
    assert _stored_floats(save_panel(tmp_path / "copies", copies, {})) == _stored_floats(folder)
    for shift, artifact in enumerate(copies.values()):
        artifact.calibration_errors = pooled + shift
    assert _stored_floats(save_panel(tmp_path / "distinct", copies, {})) == _stored_floats(folder) + 3 * pooled.size
    text = (folder / SECTIONS).read_text()
    assert text.count('"calibration_errors":{"$array":') == 4 and "NaN" not in text


def test_shared_metadata_and_calendar_dates_are_stored_once(folder, artifacts, tmp_path):
    text = (folder / SECTIONS).read_text()
    assert text.count('"$dates":["2016-01-01",84]') == 4 and "libraries" not in text
    assert "libraries" in json.loads((folder / PANEL_JSON).read_text())["item_metadata"]
    # Timestamps off the calendar's run are kept as they are, and come back the same.
    import copy

    odd = copy.deepcopy(artifacts["A"])
    odd.history = {"timestamps": ["2022-10-01", "2022-12-01"], "values": [1.0, 2.0]}
    odd.metadata = {**odd.metadata, "libraries": "other"}
    model = PanelModel.load(save_panel(tmp_path / "odd", {"A": odd, "B": artifacts["B"]}, {}))
    assert model.artifact("A").document() == odd.document()
    assert model.artifact("B").document() == artifacts["B"].document()


def test_unknown_item_is_named(folder):
    with pytest.raises(UnknownItem, match="'Z'") as info:
        PanelModel.load(folder).forecaster("Z")
    assert info.value.item_id == "Z" and not isinstance(info.value, KeyError)


def test_nothing_is_pickled(folder):
    with zipfile.ZipFile(folder / ARRAYS) as archive:
        for name in archive.namelist():
            assert archive.read(name)[:6] == b"\x93NUMPY"
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)


def _rewrite_manifest(folder, change):
    manifest = json.loads((folder / PANEL_JSON).read_text())
    change(manifest)
    (folder / PANEL_JSON).write_text(json.dumps(manifest))


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda f: (f / SECTIONS).write_bytes((f / SECTIONS).read_bytes()[:-100]), f"{SECTIONS}: has"),
    (lambda f: (f / ARRAYS).unlink(), f"lacks {ARRAYS}"),
    (lambda f: (f / PANEL_JSON).write_text("{"), f"{PANEL_JSON}: is not valid JSON"),
    (lambda f: (f / SECTIONS).write_bytes((f / SECTIONS).read_bytes().replace(b'seasonal_naive', b'seasonal_naivX', 1)),
     "SHA-256"),
    (lambda f: _rewrite_manifest(f, lambda m: m.update(format_version=9)), "unsupported panel format"),
    (lambda f: _rewrite_manifest(f, lambda m: m.update(items=["A", "B", "C"])), "4 positions"),
    (lambda f: _rewrite_manifest(f, lambda m: m.update(items=["B", "A", "C", "D"])), "sorted and distinct"),
    (lambda f: _rewrite_manifest(f, lambda m: m.update(items=["A", "B", "C\x07", "D"])), "control or invisible characters"),
    (lambda f: _rewrite_manifest(f, lambda m: m.update(freq="fortnightly")), PANEL_JSON),
])
def test_a_damaged_folder_is_refused_naming_the_file_and_problem(folder, damage, fragment):
    damage(folder)
    with pytest.raises(ArtifactError, match="panel folder 'panel'") as info:
        PanelModel.load(folder)
    assert fragment in str(info.value)


def test_non_finite_numbers_are_refused_at_load(folder):
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        stored = {name: arrays[name] for name in arrays.files}
    stored["values"][3] = np.inf
    np.savez(folder / ARRAYS, **stored)
    reseal(folder)
    with pytest.raises(ArtifactError, match=f"{ARRAYS}: values holds non-finite numbers"):
        PanelModel.load(folder)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda d: d["parameters"].update(sigma2=-1.0), "sigma2 must be a number >= 0"),
    (lambda d: d["parameters"].update(last_season={"$array": 999}), "not an index below"),
    (lambda d: d.update(calibration_errors={"$array": d["calibration_errors"]["$array"], "shape": [5, 5]}),
     "does not fit"),
    (lambda d: d.update(core="quantum"), "unknown forecasting core"),
])
def test_an_inconsistent_section_is_refused_naming_the_item(folder, edit, fragment):
    edit_section(folder, 0, edit)  # item "A", a seasonal naive model
    model = PanelModel.load(folder)  # the index is sound; the section is checked when first asked for
    model.forecaster("B")
    with pytest.raises(ArtifactError, match=f"{SECTIONS} \\(item 'A'\\)") as info:
        model.forecaster("A")
    assert fragment in str(info.value)
    with pytest.raises(ArtifactError):
        model.check()


def test_save_refuses_invalid_items(tmp_path, artifacts):
    good = artifacts["A"]
    with pytest.raises(ArtifactError, match="must not be empty"):
        save_panel(tmp_path / "p", {"": good}, {})
    with pytest.raises(ArtifactError, match="at most 256"):
        save_panel(tmp_path / "p", {"x" * 257: good}, {})
    with pytest.raises(ArtifactError, match="at least one item"):
        save_panel(tmp_path / "p", {}, {})
    weekly = fit_item(9)
    weekly.freq = "W-FRI"
    with pytest.raises(ArtifactError, match="frequency 'W-FRI' differs"):
        save_panel(tmp_path / "p", {"A": good, "B": weekly}, {})
    broken = fit_item(9)
    broken.parameters = {**broken.parameters, "sigma2": float("nan")}
    with pytest.raises(ArtifactError, match="panel item 'B'.*finite"):
        save_panel(tmp_path / "p", {"A": good, "B": broken}, {})
    assert not (tmp_path / "p" / PANEL_JSON).exists()


def test_merge_shards_into_one_version(tmp_path, artifacts):
    items = sorted(artifacts)
    assert len(items) == 4
    shard_a = save_panel(tmp_path / "shard-0", {i: artifacts[i] for i in items[:1]},
                         {"name": "panel", "metrics": {"cv_mase": 0.4, "cv_items": 1}, "data_sha256": "a"})
    shard_b = save_panel(tmp_path / "shard-1", {i: artifacts[i] for i in items[1:]},
                         {"name": "panel", "metrics": {"cv_mase": 0.8, "cv_items": 3}, "data_sha256": "b"})
    merged = PanelModel.load(merge_panels([shard_a, shard_b], tmp_path / "merged"))
    # The panel's metrics, not the first shard's: item-weighted means, item counts summed.
    assert merged.items == items and merged.metadata == {
        "name": "panel", "shards": 2, "metrics": {"cv_mase": pytest.approx(0.7), "cv_items": 4},
        "shard_data_sha256": ["a", "b"]}
    for item in items:
        assert merged.forecaster(item).predict(12, 0.8).records() == Forecaster(artifacts[item]).predict(12, 0.8).records()
    with np.load(tmp_path / "merged" / ARRAYS, allow_pickle=False) as arrays:
        assert arrays["values"].size < sum(a.calibration_errors.size for a in artifacts.values())  # pooled once


def test_merge_refuses_an_item_in_two_shards(tmp_path, artifacts):
    shard_a = save_panel(tmp_path / "shard-0", {"A": artifacts["A"], "B": artifacts["B"]}, {})
    shard_b = save_panel(tmp_path / "shard-1", {"B": artifacts["B"]}, {})
    with pytest.raises(ArtifactError, match="item 'B' is in two shards: 'shard-0' and 'shard-1'"):
        merge_panels([shard_a, shard_b], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_a_panel_folder_copied_whole_still_loads(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert PanelModel.load(copy).items == sorted(ITEMS)


def test_the_test_helper_saves_a_loadable_panel(tmp_path):
    model = PanelModel.load(panel(tmp_path / "p", {"x": "seasonal_naive", "y": "seasonal_naive"}))
    assert model.items == ["x", "y"] and model.metadata["name"] == "panel"
