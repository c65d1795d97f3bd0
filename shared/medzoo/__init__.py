"""medzoo: the shared layer of the medical-imaging MONAI bundle zoo.

Bundle configs import this package once (``"$import medzoo"``) and reach its parts as attributes, e.g.
``medzoo.data.list_inputs`` or ``medzoo.cxr.labels.CHEXNET_LABELS``. A part is imported on first access, so a
bundle needs only the third-party packages of the parts it uses (those its metadata lists).
"""

from ._lazy import lazy_attributes

__version__ = "0.1.0"

_SUBPACKAGES = ("cmr", "cxr", "data", "distill", "fileio", "handlers", "inferers", "io_checks", "losses", "metrics",
                "networks", "paths", "safety", "ssl", "verify", "volume", "weights", "zoo")

__all__ = ["__version__", *_SUBPACKAGES]

__getattr__, __dir__ = lazy_attributes(__name__, {name: name for name in _SUBPACKAGES})
