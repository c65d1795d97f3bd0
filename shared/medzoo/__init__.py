"""medzoo: the shared layer of the medical-imaging MONAI bundle zoo."""

__version__ = "0.1.0"
