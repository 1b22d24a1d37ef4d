"""The sharded fit's pieces (pipeline/panel_shards.py, entrypoints/panel_fit.py): staging an instance's
shard, merging the instances' partial panels whatever instance fitted what, and the job's inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_code.engine.core.panel_artifact import PanelModel
from pipeline_code.entrypoints.sagemaker_paths import ROOT_ENV, current_host
from pipeline_code.pipeline.panel_shards import ShardError, fit_in_shards, merged_shards, shard_parts
from tests.serving.panel_models import panel

HEADER = "item_id,timestamp,value\n"


def shard_file(folder: Path, name: str, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def test_an_instance_stages_its_train_files_with_their_test_twins(tmp_path):
    train, test = tmp_path / "train", tmp_path / "test"
    shard_file(train, "series-00001.csv", ["b,2020-01-01,1"])
    shard_file(train, "series-00003.csv", [])  # no item fell in this shard: header only
    for k in range(4):
        shard_file(test, f"series-{k:05d}.csv", [f"x{k},2021-01-01,1"])
    work = shard_parts(train, test, tmp_path / "work")
    assert sorted(p.name for p in (work / "train").iterdir()) == ["series-00001.csv"]
    assert (work / "test" / "series-00001.csv").read_text() == HEADER + "x1,2021-01-01,1\n"


def test_an_instance_without_rows_has_no_shard_and_a_missing_twin_is_named(tmp_path):
    shard_file(tmp_path / "train", "series-00000.csv", [])
    assert shard_parts(tmp_path / "train", tmp_path / "test", tmp_path / "work") is None
    shard_file(tmp_path / "train", "series-00002.csv", ["a,2020-01-01,1"])
    with pytest.raises(ShardError, match="series-00002.csv"):
        shard_parts(tmp_path / "train", tmp_path / "test", tmp_path / "work")


def test_the_merge_does_not_depend_on_which_instance_fitted_which_shard(tmp_path):
    """SageMaker decides which instance gets which file: algo-1 may hold the later shard."""
    first = tmp_path / "a" / "algo-1"
    panel(first, {"c": "seasonal_naive", "d": "seasonal_naive"}, {"shard": "cd"})
    panel(tmp_path / "a" / "algo-2", {"a": "seasonal_naive", "b": "harmonic_arima"}, {"shard": "ab"})
    merged = PanelModel.load(merged_shards(tmp_path / "a", tmp_path / "merged"))
    assert merged.items == ["a", "b", "c", "d"]
    assert merged.metadata["shard"] == "ab" and merged.metadata["shards"] == 2
    assert merged_shards(first, tmp_path / "none") is None  # a panel folder itself is no set of shards


def test_fitting_in_shards_fits_each_shard_alone_and_merges(tmp_path):
    train, test = tmp_path / "train", tmp_path / "test"
    for k, items in enumerate((["a", "b"], ["c"])):
        shard_file(train, f"series-{k:05d}.csv", [f"{item},2020-01-01,1" for item in items])
        shard_file(test, f"series-{k:05d}.csv", [f"{item},2021-01-01,1" for item in items])
    seen = []

    def fit(shard_train: Path, shard_test: Path, out: Path, shard: str) -> list[str]:
        assert [p.name for p in shard_train.glob("*.csv")] == [f"{shard}.csv"]
        items = sorted({line.split(",")[0] for p in shard_train.glob("*.csv") for line in p.read_text().splitlines()[1:]})
        seen.append(items)
        panel(out, {item: "seasonal_naive" for item in items})
        return items

    assert fit_in_shards(train, test, tmp_path / "model", fit) == [["a", "b"], ["c"]]
    assert PanelModel.load(tmp_path / "model").items == ["a", "b", "c"]


def test_the_job_reads_its_host(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="current_host"):
        current_host()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "resourceconfig.json").write_text(json.dumps({"current_host": "../x", "hosts": []}))
    with pytest.raises(ValueError, match="not a host name"):
        current_host()
    (tmp_path / "config" / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-2"}))
    assert current_host() == "algo-2"
