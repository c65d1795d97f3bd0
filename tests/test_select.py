"""Bundle selection from the index's figures: every verdict is explained, unmeasured never passes a latency budget."""

import json

import pytest

from medzoo.selection import format_report, select_bundles
from medzoo.zoo import build_index


def _entry(name, task, parameters, version="1.0.0", modality=("xray",), benchmark=None):
    return {
        "name": name,
        "task": task,
        "version": version,
        "parameters": parameters,
        "modality": list(modality),
        "benchmark": benchmark,
    }


@pytest.fixture
def index(tmp_path):
    path = tmp_path / "zoo_index.json"
    bundles = [
        _entry(
            "fast_cls",
            "Chest X-ray classification",
            1_000_000,
            benchmark={"version": "1.0.0", "latency_ms_b1": 20.0, "size_mb": 3.9, "machine": "test box"},
        ),
        _entry(
            "slow_cls", "Chest X-ray classification", 25_000_000, benchmark={"version": "1.0.0", "latency_ms_b1": 250.0}
        ),
        _entry("unmeasured_cls", "Chest X-ray classification", 2_000_000),
        _entry(
            "stale_cls", "Chest X-ray classification", 2_000_000, benchmark={"version": "0.9.0", "latency_ms_b1": 1.0}
        ),
        _entry(
            "ct_seg",
            "CT spleen segmentation",
            5_000_000,
            modality=("ct",),
            benchmark={"version": "1.0.0", "latency_ms_b1": 10.0},
        ),
    ]
    path.write_text(json.dumps({"bundles": bundles}))
    return path


def _by_name(candidates):
    return {c.name: c for c in candidates}


def test_latency_task_and_size_budgets_with_reasons(index):
    result = select_bundles(task="classification", max_latency_ms=100, max_size_mb=50, index_file=index)
    verdicts = _by_name(result)
    assert [c.name for c in result if c.kept] == ["fast_cls"]
    assert any("latency 250.0 ms at batch 1 > 100" in r for r in verdicts["slow_cls"].reasons)
    assert any("latency unmeasured (no benchmark in the index)" in r for r in verdicts["unmeasured_cls"].reasons)
    assert any("measured on v0.9.0, not v1.0.0" in r for r in verdicts["stale_cls"].reasons)
    assert any("lacks ['classification']" in r for r in verdicts["ct_seg"].reasons)
    assert verdicts["fast_cls"].size_source == "measured" and verdicts["fast_cls"].size_mb == 3.9
    assert "recommended: fast_cls" in format_report(result)


def test_size_comes_from_parameter_count_when_not_measured(index):
    verdicts = _by_name(select_bundles(max_size_mb=8, index_file=index))
    assert verdicts["unmeasured_cls"].size_mb == pytest.approx(2_000_000 * 4 / 2**20)
    assert verdicts["unmeasured_cls"].kept and not verdicts["slow_cls"].kept  # 95 MB from 25M float32 parameters
    assert "2,000,000 parameters x 4 bytes" in verdicts["unmeasured_cls"].size_source


def test_kept_bundles_are_ranked_fastest_first_and_modality_filters(index):
    result = select_bundles(index_file=index)
    kept = [c.name for c in result if c.kept]
    assert kept[:3] == ["ct_seg", "fast_cls", "slow_cls"]  # measured, by latency; then unmeasured
    assert [c.name for c in select_bundles(modality="ct", index_file=index) if c.kept] == ["ct_seg"]


def test_every_zoo_bundle_is_judged_and_unmeasured_ones_fail_a_latency_budget(tmp_path):
    path = tmp_path / "zoo_index.json"
    index = build_index()
    path.write_text(json.dumps(index))
    result = select_bundles(max_latency_ms=1e9, index_file=path)
    assert sorted(c.name for c in result) == sorted(e["name"] for e in index["bundles"])
    for c in result:
        assert c.kept == (c.latency_ms is not None), c.reasons


def test_cli_select_prints_the_verdicts(capsys):
    import fire

    from medzoo.cli_commands import ZooCLI

    fire.Fire(ZooCLI, command=["select", "--task", "classification", "--max-latency-ms", "100"], name="medzoo")
    out = capsys.readouterr().out
    assert "cxr14_densenet121_classification" in out and "latency unmeasured" in out
