"""medzoo: the shared layer of the medical-imaging MONAI bundle zoo.

Bundle configs import this package once (``"$import medzoo"``) and reach its parts as attributes, e.g.
``medzoo.data.list_inputs`` or ``medzoo.cxr.labels.CHEXNET_LABELS``. A part is imported on first access, so a
bundle needs only the third-party packages of the parts it uses (those its metadata lists).

Importing it installs :func:`medzoo.errors.install_excepthook`: a user mistake (:class:`medzoo.errors.UserError`)
ends a ``python -m monai.bundle run`` of a bundle config with one line instead of a traceback.
"""

from ._lazy import lazy_attributes
from .errors import install_excepthook

__version__ = "0.1.0"

_SUBPACKAGES = (
    "archives",
    "bundle_checks",
    "bundle_properties",
    "cmr",
    "config_review",
    "cxr",
    "data",
    "distill",
    "distributed",
    "downloads",
    "errors",
    "fileio",
    "gradcam",
    "handlers",
    "hardening_checks",
    "inferers",
    "io_checks",
    "losses",
    "metrics",
    "monailabel_checks",
    "networks",
    "paths",
    "ssl",
    "verify",
    "volume",
    "weights",
    "workflow_checks",
    "zoo",
)

__all__ = ["__version__", *_SUBPACKAGES]

__getattr__, __dir__ = lazy_attributes(__name__, {name: name for name in _SUBPACKAGES})

install_excepthook()
