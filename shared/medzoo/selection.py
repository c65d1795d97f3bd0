"""Recommending bundles for a task under latency and size budgets, from the figures in ``zoo_index.json``.

Every bundle is reported with the reasons it was kept or dropped. Figures come from the index only:

- latency: ``benchmark.latency_ms_b1`` (batch 1), written by the benchmark tooling for the bundle's current version.
  A bundle without it, or measured on another version, is **unmeasured** and never passes a latency budget;
- size: ``benchmark.size_mb`` when measured, otherwise computed from the index's ``parameters`` as float32 weights
  (4 bytes each), and said so;
- memory: the ``memory`` record's ``peak_memory_mb`` (peak resident memory of inference on a whole input of the
  stated size, e.g. a CT volume) when measured for the current version, otherwise ``benchmark.peak_memory_mb`` (the
  bare network at batch 1), and said so. A bundle with neither is **unmeasured** and never passes a memory budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .zoo import INDEX_FILE, read_index

__all__ = ["Candidate", "format_report", "select_bundles"]

BYTES_PER_PARAMETER = 4  # float32


@dataclass
class Candidate:
    """One bundle's verdict: ``kept`` and the human-readable ``reasons`` (one per criterion)."""

    name: str
    task: str
    kept: bool = True
    reasons: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    size_mb: float | None = None
    size_source: str = ""
    memory_mb: float | None = None
    memory_source: str = ""

    def judge(self, passed: bool, reason: str) -> None:
        self.kept = self.kept and passed
        self.reasons.append(("ok: " if passed else "dropped: ") + reason)


def _measured(entry: dict, key: str = "benchmark") -> dict:
    record = entry.get(key) or {}
    return record if record.get("version") == entry["version"] else {}


def _memory(entry: dict) -> tuple[float | None, str]:
    """Peak memory (MB) of the bundle's inference and what it was measured on; (None, why) when unmeasured."""
    whole = _measured(entry, "memory")
    if "peak_memory_mb" in whole:
        shape = "x".join(map(str, whole.get("volume_shape") or [])) or "whole input"
        return float(whole["peak_memory_mb"]), f"{whole.get('task', 'inference')} on {shape}"
    bench = _measured(entry)
    if "peak_memory_mb" in bench:
        return float(bench["peak_memory_mb"]), "bare network at batch 1"
    stale = [f"{k} on v{(entry.get(k) or {}).get('version')}" for k in ("memory", "benchmark") if entry.get(k)]
    return None, f"measured {', '.join(stale)}, not v{entry['version']}" if stale else "no memory figure in the index"


def select_bundles(
    task: str | None = None,
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    modality: str | None = None,
    index_file: str | os.PathLike = INDEX_FILE,
    max_memory_mb: float | None = None,
) -> list[Candidate]:
    """Judge every bundle in the index; kept ones first (fastest measured, then smallest), then dropped ones.

    Args:
        task: words that must all appear in the bundle's task description or name (case-insensitive),
            e.g. ``"classification"`` or ``"chest segmentation"``.
        max_latency_ms: batch-1 latency budget; unmeasured bundles are dropped when it is given.
        max_size_mb: weight size budget in MiB.
        modality: an input modality the bundle must take (e.g. ``"xray"``, ``"ct"``).
        max_memory_mb: peak memory budget of inference in MB; unmeasured bundles are dropped when it is given.
    """
    candidates = []
    for entry in read_index(index_file)["bundles"]:
        c = Candidate(entry["name"], entry["task"])
        bench = _measured(entry)
        if task:
            text = f"{entry['task']} {entry['name']}".lower()
            missing = [w for w in task.lower().split() if w not in text]
            c.judge(not missing, f"task '{entry['task']}'" + (f" lacks {missing}" if missing else f" matches '{task}'"))
        if modality:
            c.judge(
                modality.lower() in [m.lower() for m in entry["modality"]],
                f"modality {entry['modality']} {'includes' if modality.lower() in entry['modality'] else 'lacks'} "
                f"'{modality}'",
            )
        if "size_mb" in bench:
            c.size_mb, c.size_source = float(bench["size_mb"]), "measured"
        else:
            c.size_mb = entry["parameters"] * BYTES_PER_PARAMETER / 2**20
            c.size_source = f"{entry['parameters']:,} parameters x 4 bytes"
        if max_size_mb is not None:
            c.judge(
                c.size_mb <= max_size_mb,
                f"size {c.size_mb:.1f} MB ({c.size_source}) "
                f"{'<=' if c.size_mb <= max_size_mb else '>'} {max_size_mb} MB",
            )
        c.memory_mb, c.memory_source = _memory(entry)
        if max_memory_mb is not None:
            if c.memory_mb is None:
                c.judge(False, f"memory unmeasured ({c.memory_source}); not assumed to meet {max_memory_mb} MB")
            else:
                c.judge(
                    c.memory_mb <= max_memory_mb,
                    f"peak memory {c.memory_mb:.0f} MB ({c.memory_source}) "
                    f"{'<=' if c.memory_mb <= max_memory_mb else '>'} {max_memory_mb} MB",
                )
        if "latency_ms_b1" in bench:
            c.latency_ms = float(bench["latency_ms_b1"])
            where = f" on {bench['machine']}" if bench.get("machine") else ""
            if max_latency_ms is not None:
                c.judge(
                    c.latency_ms <= max_latency_ms,
                    f"latency {c.latency_ms:.1f} ms at batch 1{where} "
                    f"{'<=' if c.latency_ms <= max_latency_ms else '>'} {max_latency_ms} ms",
                )
        elif max_latency_ms is not None:
            stale = (entry.get("benchmark") or {}).get("version")
            why = f"measured on v{stale}, not v{entry['version']}" if stale else "no benchmark in the index"
            c.judge(False, f"latency unmeasured ({why}); not assumed to meet {max_latency_ms} ms")
        candidates.append(c)
    return sorted(candidates, key=lambda c: (not c.kept, c.latency_ms is None, c.latency_ms or 0.0, c.size_mb or 0.0))


def format_report(candidates: list[Candidate]) -> str:
    """One block per bundle: verdict, figures, reasons."""
    lines = []
    for c in candidates:
        latency = f"{c.latency_ms:.1f} ms" if c.latency_ms is not None else "unmeasured"
        memory = f"{c.memory_mb:.0f} MB" if c.memory_mb is not None else "unmeasured"
        lines.append(
            f"{'KEEP' if c.kept else 'DROP'}  {c.name}  (latency b1: {latency}, size: {c.size_mb:.1f} MB, "
            f"peak memory: {memory})"
        )
        lines += [f"      - {r}" for r in c.reasons] or ["      - no criteria given"]
    kept = [c.name for c in candidates if c.kept]
    lines.append(f"recommended: {', '.join(kept) if kept else 'none'}")
    return "\n".join(lines)
