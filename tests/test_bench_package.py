"""The structure of ``medzoo.bench``: small modules importing one way, compression on top of it, and committed
benchmark reports that are exactly what the renderer makes of their JSON; no private name imported across modules."""

import ast
import json
from pathlib import Path

import pytest

from medzoo.paths import BUNDLES_DIR

SHARED = Path(__file__).resolve().parents[1] / "shared"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SHARED).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``medzoo`` modules a module's file imports anywhere (top level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("medzoo")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("medzoo"):
                continue
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # `from . import x` names a module
    return found


def _import_graph() -> dict[str, set[str]]:
    """medzoo module -> the medzoo modules importing it runs (its imports, and the packages that hold them)."""
    files = {_module_name(p): p for p in (SHARED / "medzoo").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = {t for t in _imports(path) if t in files}
        graph[name] = targets | {t.rsplit(".", k)[0] for t in targets for k in range(1, t.count(".") + 1)} - {name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_bench_modules_import_one_way_and_never_import_compression():
    graph = _import_graph()
    bench = sorted(m for m in graph if m.startswith("medzoo.bench."))
    assert {m.rpartition(".")[2] for m in bench} == {
        "timing",
        "measure",
        "runner",
        "tuning",
        "compare",
        "driver",
        "bundles",
        "report",
    }
    for module in bench:
        reached = _reachable(graph, module)
        assert "medzoo.compress" not in reached, f"{module} imports medzoo.compress"
        assert module not in reached, f"{module} is part of an import cycle"
    # compression reuses the comparison of bench; quantization serves both and imports neither
    assert "medzoo.bench.compare" in graph["medzoo.compress"]
    assert not {m for m in _reachable(graph, "medzoo.quantize") if m.startswith(("medzoo.bench", "medzoo.compress"))}
    assert "medzoo.compress" not in _reachable(graph, "medzoo.compress")
    for module in [*bench, "medzoo.compress", "medzoo.quantize"]:
        path = SHARED / (module.replace(".", "/") + ".py")
        assert len(path.read_text().splitlines()) < 400, f"{path.name} has grown past 400 lines"


@pytest.mark.parametrize(
    "report", sorted(BUNDLES_DIR.glob("*/docs/benchmark*.json")), ids=lambda p: f"{p.parts[-3]}/{p.stem}"
)
def test_committed_benchmark_reports_are_rendered_from_their_json(report):
    """Each report's Markdown is what the current renderer makes of its JSON, command line included, so no branch
    for an older layout of the JSON is needed."""
    from medzoo.bench.report import benchmark_markdown

    assert report.with_suffix(".md").read_text() == benchmark_markdown(json.loads(report.read_text()))


def test_runner_dispatches_through_its_registry(tmp_path, capsys):
    from medzoo.bench.measure import measure, scratch_weights
    from medzoo.bench.runner import MEASUREMENTS, in_subprocess, main
    from medzoo.zoo import Bundle

    assert MEASUREMENTS["forward"] is measure and set(MEASUREMENTS) == {"forward", "inference", "train"}
    bundle = Bundle("cmr_motion_estimation")
    with pytest.raises(ValueError, match=r"unknown measurement 'main'; choose one of \['forward', 'inference'"):
        in_subprocess("main", bundle)
    weights = scratch_weights(bundle, tmp_path)
    main(
        [
            "forward",
            str(bundle.root),
            json.dumps({"backend": "torch", "model": str(weights), "batch_sizes": [1], "warmup": 0, "runs": 1}),
        ]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["backend"] == "torch" and list(result["per_batch"]) == ["1"] and result["latency_ms_b1"] > 0


def test_no_module_imports_a_private_name_of_another():
    """Helpers used across modules have a public home: no ``from x import _name`` in the package, tests or benchmarks
    (``__future__`` aside)."""
    root = SHARED.parent
    found = []
    for path in [
        *(SHARED / "medzoo").rglob("*.py"),
        *(root / "tests").glob("*.py"),
        *(root / "benchmarks").glob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(root)}:{node.lineno} imports {', '.join(private)}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_no_module_is_part_of_an_import_cycle():
    """Modules import one way, counting imports inside functions too (a local import is no way around a cycle);
    package ``__init__`` files, which list their submodules, are left out."""
    graph = _import_graph()
    packages = {m for m in graph if (SHARED / m.replace(".", "/") / "__init__.py").is_file()}
    modules = {m: targets - packages for m, targets in graph.items() if m not in packages}
    assert len(modules) > 50
    assert [m for m in modules if m in _reachable(modules, m)] == []
