"""Model cards: every generated section is current, figures come only from the generated "Performance" section
(rendered from the bundle's measurement reports), and the hand-written rest quotes no measured figures."""

import json
import re
import shutil

import pytest

from medzoo.card_performance import performance_section
from medzoo.cards import GENERATED_SECTIONS, render_card, with_performance_section
from medzoo.paths import BUNDLES_DIR, bundle_names
from medzoo.zoo import Bundle

#: What a hand-written figure of a run looks like; none may appear outside the generated sections.
FIGURE_PATTERNS = {
    "a date": r"\b20\d\d-\d\d-\d\d\b",
    "a throughput": r"\d\s*(?:img|images|inputs|slices|volumes)/s\b",
    "a time in ms": r"\d\s*ms\b",
    "a time in seconds or minutes": r"\b\d+(?:\.\d+)?\s+(?:s|min)\b(?![-/])",
    "a speed ratio": r"\b\d+(?:\.\d+)?x\s+(?:faster|slower|as fast|the (?:throughput|time|speed|size))",
    "a memory figure": r"\b\d+(?:\.\d+)?\s*(?:MiB|GiB|MB)\b",
    "a bold figure": r"\*\*[-+]?\d+(?:\.\d+)?x?\*\*",
    "a measured score": r"(?:AUROC|Dice|accuracy|HD95)[^.\n|]{0,40}?\b(?:is|was|of|gave|reached|reaches)\s+0\.\d{2,}",
    "a run anecdote": r"(?i)\b(?:earlier that|that (?:morning|afternoon|evening)|an hour (?:earlier|before)|"
    r"the issue's|load average (?:of |at )?about|one run on a shared)",
}


def handwritten_figures(card: str) -> list[str]:
    """Lines of ``card`` outside its generated sections and code blocks that quote a figure of a run."""
    generated = "|".join(map(re.escape, GENERATED_SECTIONS))
    text = re.sub(rf"(?ms)^## (?:{generated})\n.*?(?=^## |\Z)", "", card)
    text = re.sub(r"(?ms)^```.*?^```", "", text)
    return [
        f"{what} ({match.group(0)!r}): {line.strip()}"
        for line in text.splitlines()
        for what, pattern in FIGURE_PATTERNS.items()
        if (match := re.search(pattern, line))
    ]


@pytest.mark.parametrize("name", bundle_names())
def test_card_sections_are_current_and_hand_written_text_quotes_no_figures(name):
    bundle = Bundle(name)
    card_file = bundle.root / "docs" / "README.md"
    card = card_file.read_text()
    assert render_card(card, bundle.metadata, card_file.parent, name) == card, (
        f"{card_file}: generated sections are stale: run medzoo.cards.write_card_sections (or, for the HybridMedNet "
        "bundles, python -m medzoo.variants)"
    )
    assert len(re.findall(r"(?m)^## Performance$", card)) == 1
    for title in ("Speed on CPU", "Compression", "Comparison of the variants"):
        assert not re.search(rf"(?m)^## {title}", card), f"{card_file}: '## {title}' belongs in '## Performance'"
    assert handwritten_figures(card) == [], f"{card_file}: figures outside the generated sections"


def test_figure_check_catches_the_old_narrative():
    old = (
        "## Speed on CPU\nVersion 0.3.2 earlier that evening: ONNX Runtime **0.88** (45.0 against 51.3 images/s), "
        "2026-12-03.\n\n## Performance\n| torch | 52.8 ms |\n"
    )
    found = handwritten_figures(old)
    assert {f.split(" (")[0] for f in found} == {"a date", "a throughput", "a bold figure", "a run anecdote"}
    assert handwritten_figures("## Training\nbatch 16 at 224x224, 2 workers; Dice >= 0.7 in the test.\n") == []


def test_performance_figures_come_from_the_reports(tmp_path):
    """Every figure of the section follows the JSON: change one, and the card changes with it."""
    name = "cxr14_densenet121_classification"
    docs = tmp_path / "docs"
    shutil.copytree(BUNDLES_DIR / name / "docs", docs)
    report = json.loads((docs / "benchmark.json").read_text())
    report["forward"]["onnx"]["latency_ms_b1"] = 12.345
    report["inference"]["onnx"]["ratio_to_forward_same_batch"] = 0.777
    (docs / "benchmark.json").write_text(json.dumps(report))
    section = performance_section(docs, name)
    assert "| onnx | 12.3 | " in section and "| 0.78 |" in section
    assert f"on {report['measured_at']} ({report['machine']}" in " ".join(section.split())
    compression = json.loads((docs / "compression.json").read_text())
    reference = compression["qat"]["comparison"]["variants"]["fp32_eager"]
    qat = compression["qat"]["comparison"]["variants"]["qat"]
    speed_up = reference["latency_ms_b1"] / qat["latency_ms_b1"]
    assert f"| qat | {compression['qat']['size_ratio']:.2f} | {speed_up:.2f} |" in section
    assert "[`vs_xrv.md`](vs_xrv.md)" in section and "[`benchmark_tuning_torch.md`]" in section
    (docs / "benchmark.json").unlink()
    assert "Not measured yet" in performance_section(docs, name)


def test_performance_section_replaces_the_old_one_in_place_or_goes_before_limitations(tmp_path):
    name = "cxr14_densenet121_classification"
    docs = BUNDLES_DIR / name / "docs"
    card = "# x\n## Overview\ntext\n## Performance\nold 0.908\n## Limitations\n- none\n"
    rendered = with_performance_section(card, docs, name)
    assert "old 0.908" not in rendered and rendered.index("## Performance") < rendered.index("## Limitations")
    assert with_performance_section(rendered, docs, name) == rendered
    without = with_performance_section("# x\n## Overview\ntext\n## Limitations\n- none\n", docs, name)
    assert without.index("## Overview") < without.index("## Performance") < without.index("## Limitations")


def test_segmentation_card_shows_the_memory_table_against_the_targets():
    bundle_docs = BUNDLES_DIR / "msd_unet3d_segmentation" / "docs"
    report = json.loads((bundle_docs / "volume_memory.json").read_text())
    card = (bundle_docs / "README.md").read_text()
    memory = card[card.index("### Memory") :]
    memory = memory[: memory.index("\n### ", 1)]
    ratios = report["ratios"]
    peak = f"{min(r['peak_rss'] for r in ratios):.2f}-{max(r['peak_rss'] for r in ratios):.2f}"
    time = f"{min(r['seconds'] for r in ratios):.2f}-{max(r['seconds'] for r in ratios):.2f}"
    assert f"| peak memory | {peak} | {report['median_ratios']['peak_rss']:.2f} | <= 0.5 |" in memory
    assert f"| wall time | {time} | {report['median_ratios']['seconds']:.2f} | <= 0.9 |" in memory
    assert "512x512x1000" in memory and "target: under 8 GB" in memory
    assert "not shown" not in card


def test_segmentation_card_shows_swin_unetr_against_the_unet_of_the_same_run():
    """The sliding-window table has a Swin-UNETR row on the CT-sized volume, with its time and memory increase as
    multiples of the U-Net row measured just before it (``benchmarks/sliding_window_overhead.py --variants``)."""
    bundle_docs = BUNDLES_DIR / "msd_unet3d_segmentation" / "docs"
    runs = json.loads((bundle_docs / "sliding_window_overhead.json").read_text())
    card = (bundle_docs / "README.md").read_text()
    swin = [r for r in runs if r["configs"] == ["swin_unetr.json"]]
    assert swin and all(r["volume_shape"] == [192, 192, 128] for r in runs)
    for run in swin:
        unet = runs[runs.index(run) - 1]
        assert unet["configs"] == [] and unet["sw_batch_size"] == run["sw_batch_size"]
        relative = run["relative_to_base"]
        assert relative["seconds"] == pytest.approx(run["seconds"] / unet["seconds"], abs=1e-3)
        shown = f"{relative['seconds']:.2f}x / {relative['peak_rss_increase']:.2f}x |"
        row = next(
            line for line in card.splitlines() if line.startswith("| `swin_unetr.json` | " + str(run["sw_batch_size"]))
        )
        assert row.endswith(shown), row


@pytest.mark.parametrize(
    ("name", "report", "key", "shown"),
    [
        ("cmr_mi_segmentation", "chain.json", ("mi_segmentation", "mi_dice"), "| MI segmentation | Dice | 0.123 |"),
        ("cxr_simclr_pretraining", "linear_probe.json", ("mean_auroc",), "| SimCLR features | 0.123 |"),
    ],
)
def test_learning_reports_render_their_figures(tmp_path, name, report, key, shown):
    """The learning-on-phantoms tables follow their JSON reports, which the card of the bundle has."""
    docs = tmp_path / "docs"
    shutil.copytree(BUNDLES_DIR / name / "docs", docs)
    data = json.loads((docs / report).read_text())
    target = data
    for k in key[:-1]:
        target = target[k]
    target[key[-1]] = 0.123
    (docs / report).write_text(json.dumps(data))
    section = performance_section(docs, name)
    assert "### Learning on phantoms" in section and shown in section
    assert f"[`{report}`]({report})" in section
