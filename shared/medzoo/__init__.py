"""medzoo: the shared layer of the medical-imaging MONAI bundle zoo.

Bundle configs import this package once (``"$import medzoo"``) and reach its parts as attributes, e.g.
``medzoo.data.list_inputs`` or ``medzoo.cxr.labels.CHEXNET_LABELS``.
"""

from . import cxr, data, fileio, handlers, io_checks, losses, metrics, networks, paths, safety, weights

__version__ = "0.1.0"

__all__ = ["cxr", "data", "fileio", "handlers", "io_checks", "losses", "metrics", "networks", "paths", "safety", "weights", "__version__"]
