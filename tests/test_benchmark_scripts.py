"""The scripts in benchmarks/ run as documented and write well-formed reports at tiny scale (no timing assertions)."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_torch_thread_layouts_reports_both_layouts_with_and_without_load(tmp_path):
    output = tmp_path / "layouts"
    subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "torch_thread_layouts.py"),
            "--bundles",
            "cxr14_mobilenetv3_distilled_classification",
            "--batch_size",
            "2",
            "--rounds",
            "1",
            "--iterations",
            "1",
            "--output",
            str(output),
        ],
        check=True,
        capture_output=True,
    )
    report = json.loads(output.with_suffix(".json").read_text())
    loads = report["bundles"]["cxr14_mobilenetv3_distilled_classification"]
    assert set(loads) == {"idle", "busy"}
    for figures in loads.values():
        assert set(figures) == {"intra-op", "run per core"} and min(figures.values()) > 0
    table = output.with_suffix(".md").read_text()
    assert table.count("| cxr14_mobilenetv3_distilled_classification |") == 2
