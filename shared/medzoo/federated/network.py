"""The bundle's network for the FLARE server, built from the bundle's own config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["BundleNetwork"]


class BundleNetwork:
    """Builds ``network_def`` of a bundle's configs, for FLARE's ``PTFileModelPersistor`` (which takes a model as a
    class path and its arguments).

    ``BundleNetwork(bundle, configs, overrides)`` returns the bundle's own ``torch.nn.Module`` (not a wrapper), so
    the global model's state-dict keys are those of the bundle's ``models/model.pt``.

    Args:
        bundle: a bundle name or folder (see :class:`medzoo.zoo.Bundle`).
        configs: config names under the bundle's ``configs/``, merged in order (``train.json`` first).
        overrides: config ids set on top (e.g. ``{"in_channels": 1}``).
    """

    def __new__(  # noqa: D102
        cls, bundle: str, configs: Sequence[str] = ("train.json",), overrides: dict[str, Any] | None = None
    ) -> torch.nn.Module:
        from ..zoo import Bundle

        return Bundle(bundle).parser(*configs, **(overrides or {})).get_parsed_content("network_def")
