"""Benchmark one bundle or the whole zoo and keep the results: the reports in each bundle's ``docs/`` and the
summary in ``zoo_index.json`` (what ``medzoo benchmark`` runs)."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..fileio import write_report
from ..zoo import INDEX_FILE, record, selected_bundles
from .driver import benchmark_bundle, benchmark_summary
from .report import benchmark_markdown

__all__ = ["benchmark_bundles"]


def benchmark_bundles(
    bundle: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    index_file: str | os.PathLike = INDEX_FILE,
    **options,
) -> dict[str, dict]:
    """Benchmark ``bundle`` or every bundle of the zoo with :func:`medzoo.bench.driver.benchmark_bundle` (``options``
    are its keyword arguments). For each: write ``docs/benchmark.json`` / ``.md`` in the bundle, record the summary
    in ``index_file`` (``medzoo select`` reads it) and log ``## <name>`` and the Markdown table. Returns the results
    by bundle name."""
    results = {}
    for found in selected_bundles(bundle):
        measured = benchmark_bundle(found, **options)
        table = benchmark_markdown(measured)
        write_report(found.root / "docs" / "benchmark", measured, table)
        record(found.name, "benchmark", benchmark_summary(found, measured), index_file=index_file)
        log(f"## {found.name}\n{table}")
        results[found.name] = measured
    return results
