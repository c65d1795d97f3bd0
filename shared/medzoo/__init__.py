"""medzoo: the shared layer of the medical-imaging MONAI bundle zoo.

Bundle configs import this package once (``"$import medzoo"``) and reach its parts as attributes, e.g.
``medzoo.data.list_inputs`` or ``medzoo.cxr.labels.CHEXNET_LABELS``.
"""

from . import (
    cmr,
    cxr,
    data,
    distill,
    fileio,
    handlers,
    io_checks,
    losses,
    metrics,
    networks,
    paths,
    safety,
    ssl,
    verify,
    volume,
    weights,
    zoo,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "cmr",
    "cxr",
    "data",
    "distill",
    "fileio",
    "handlers",
    "io_checks",
    "losses",
    "metrics",
    "networks",
    "paths",
    "safety",
    "ssl",
    "verify",
    "volume",
    "weights",
    "zoo",
]
