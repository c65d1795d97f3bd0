"""Run one measurement of :mod:`medzoo.bench.measure` in a fresh Python process and read back its result.

``python -m medzoo.bench.runner <forward|inference|train> <bundle folder> '<json keyword arguments>'`` prints the
result as one JSON line; :data:`MEASUREMENTS` names the function each kind runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..zoo import Bundle
from .measure import measure, measure_inference, measure_training

__all__ = ["MEASUREMENTS", "in_subprocess", "main", "measure_in_subprocess"]

#: measurement kind -> the function that measures it (its keyword arguments are the kind's).
MEASUREMENTS = {"forward": measure, "inference": measure_inference, "train": measure_training}


def in_subprocess(kind: str, bundle: Bundle, **kwargs) -> dict:
    """Run one measurement (``forward``, ``inference`` or ``train``) in a fresh Python process and return its result.

    The keyword arguments are those of the function :data:`MEASUREMENTS` names for ``kind``.
    """
    if kind not in MEASUREMENTS:
        raise ValueError(f"unknown measurement '{kind}'; choose one of {sorted(MEASUREMENTS)}")
    command = [sys.executable, "-m", "medzoo.bench.runner", kind, str(bundle.root), json.dumps(kwargs, default=str)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{bundle.name}: {kind} measurement {kwargs} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_in_subprocess(
    bundle: Bundle,
    backend: str,
    model: str | os.PathLike,
    batch_sizes: tuple[int, ...] = (1, 4, 8),
    warmup: int = 2,
    runs: int = 5,
    onnx_options: dict | None = None,
    with_input_network: bool = False,
    torch_options: dict | None = None,
) -> dict:
    """:func:`~medzoo.bench.measure.measure` in a fresh Python process (so peak memory is this backend's alone)."""
    return in_subprocess(
        "forward",
        bundle,
        backend=backend,
        model=str(model),
        batch_sizes=list(batch_sizes),
        warmup=warmup,
        runs=runs,
        onnx_options=onnx_options,
        with_input_network=with_input_network,
        torch_options=torch_options,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m medzoo.bench.runner <forward|inference|train> <bundle> '<json keyword arguments>'``: print the
    result of :data:`MEASUREMENTS` ``[kind]`` as one JSON line."""
    kind, root, arguments = sys.argv[1:4] if argv is None else argv
    bundle, kwargs = Bundle(root), json.loads(arguments)
    if "batch_sizes" in kwargs:
        kwargs["batch_sizes"] = tuple(kwargs["batch_sizes"])
    print(json.dumps(MEASUREMENTS[kind](bundle, **kwargs)))


if __name__ == "__main__":
    main()
