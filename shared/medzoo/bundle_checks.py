"""Checks of a bundle's files, metadata and network, as the MONAI model zoo's CI runs them (nothing is trained).

- :func:`check_files`: the files every bundle has (and every trainable one), the disclaimer in the docs, inference
  configs that read no other bundle's files;
- :func:`check_metadata`: ``verify_metadata`` against the schema shipped in ``medzoo/schema`` (no download), the
  changelog names the version in one short line per entry, output ``channel_def`` has one name per channel (MONAI
  Label reads it), class outputs have ``spatial_shape`` ``[1, num_channels]`` (as the MONAI model zoo writes them),
  and ``required_packages_version`` lists ``fire`` (``python -m monai.bundle``) but not the vendored ``medzoo``;
- :func:`check_net_in_out`: ``verify_net_in_out`` on ``network_def`` with the shapes from the metadata;
- :func:`check_export`: ``ckpt_export`` to TorchScript from deterministic initial weights, loaded back and compared
  with the eager network on the same inputs (one per metadata input).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

from .export import example_inputs, input_names
from .weights import load_state_dict, write_init_weights
from .zoo import Bundle

__all__ = [
    "REQUIRED_FILES",
    "SCHEMA_FILE",
    "TRAINABLE_FILES",
    "check_export",
    "check_files",
    "check_metadata",
    "check_net_in_out",
]

SCHEMA_FILE = Path(__file__).parent / "schema" / "meta_schema.json"
REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
)
TRAINABLE_FILES = ("configs/train.json", "configs/evaluate.json", "configs/multi_gpu_train.json")

#: How a config names a bundle folder: ``medzoo.paths.bundle_root('<name>')`` or ``medzoo.zoo.Bundle('<name>')``.
_OTHER_BUNDLE = re.compile(r"""(?:bundle_root|Bundle)\(\s*['"]([^'"]+)['"]""")


def check_files(bundle: Bundle) -> None:
    """The files every bundle has, and those every trainable bundle has; the docs carry the disclaimer; inference
    configs read no other bundle's files."""
    expected = REQUIRED_FILES + (TRAINABLE_FILES if (bundle.root / "configs" / "train.json").is_file() else ())
    missing = [f for f in expected if not (bundle.root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{bundle.name}: missing {missing}")
    docs = (bundle.root / "docs" / "README.md").read_text().lower()
    if "not for clinical use" not in docs:
        raise ValueError(f"{bundle.name}: docs/README.md must state that the model is not for clinical use")
    for config in [c for c in bundle.configs if c.startswith("inference")]:
        others = set(_OTHER_BUNDLE.findall(bundle.config_path(config).read_text())) - {bundle.name}
        if others:
            raise ValueError(
                f"{bundle.name}: configs/{config} reads files of other bundles {sorted(others)}; inference "
                "must run from this bundle alone (a package holds one bundle): keep those files in models/"
            )


def check_metadata(bundle: Bundle, schema_file: str | os.PathLike = SCHEMA_FILE) -> None:
    """Validate ``configs/metadata.json`` against the zoo's schema and the cross-field rules a schema cannot state."""
    try:
        verify_metadata(meta_file=str(bundle.metadata_file), filepath=str(schema_file))
    except ValueError as e:
        raise ValueError(f"{bundle.name}: metadata.json does not follow the schema: {e}") from e
    meta = bundle.metadata
    if meta["version"] not in meta["changelog"]:
        raise ValueError(f"{bundle.name}: changelog has no entry for version {meta['version']}")
    for version, entry in meta["changelog"].items():
        if len(entry) >= 100:
            raise ValueError(
                f"{bundle.name}: changelog entry {version} is {len(entry)} characters; write one short line "
                "under 100 characters saying what changed (no figures, reasons or history)"
            )
    packages = meta["required_packages_version"]
    if "medzoo" in packages:
        raise ValueError(
            f"{bundle.name}: required_packages_version lists medzoo, which a package carries vendored and "
            "no package index has: list only installable distributions"
        )
    if "fire" not in packages:
        raise ValueError(
            f"{bundle.name}: required_packages_version must list fire, which 'python -m monai.bundle' needs"
        )
    for kind in ("inputs", "outputs"):
        for key, spec in meta["network_data_format"][kind].items():
            names = spec.get("channel_def", {})
            if kind == "outputs" and len(names) != spec["num_channels"]:
                raise ValueError(
                    f"{bundle.name}: output '{key}' has {spec['num_channels']} channels but channel_def names {len(names)}"
                )
            if kind == "outputs" and spec["format"] == "classes" and spec["spatial_shape"] != [1, spec["num_channels"]]:
                raise ValueError(
                    f"{bundle.name}: class output '{key}' must have spatial_shape [1, num_channels] "
                    f"([1, {spec['num_channels']}], as the MONAI model zoo writes it), not {spec['spatial_shape']}"
                )


def check_net_in_out(bundle: Bundle, config: str = "inference.json") -> None:
    """Run ``network_def`` on a random input of the metadata's input shape and check the output channels / dtype;
    the metadata's further inputs (e.g. ``clinical``) are passed by name as random tensors of their shapes."""
    more = dict(zip(input_names(bundle)[1:], example_inputs(bundle, batch_size=1)[1:]))
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle.metadata_file),
        config_file=str(bundle.config_path(config)),
        device="cpu",
        bundle_root=str(bundle.root),
        extra_forward_args=more,
    )


def check_export(
    bundle: Bundle, workdir: str | os.PathLike, config: str = "inference.json", atol: float = 1e-4
) -> Path:
    """``ckpt_export`` to TorchScript, load it back, and compare with the eager network on the same input."""
    workdir = Path(workdir)
    ckpt = write_init_weights(bundle, workdir / "model.pt", config=config)
    ts_file = workdir / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(ckpt),
        meta_file=str(bundle.metadata_file),
        config_file=str(bundle.config_path(config)),
        bundle_root=str(bundle.root),
    )
    scripted = torch.jit.load(str(ts_file), map_location="cpu")
    eager = bundle.network(config)
    eager.load_state_dict(load_state_dict(ckpt))
    x = example_inputs(bundle)
    with torch.no_grad():
        diff = (scripted.eval()(*x) - eager.eval()(*x)).abs().max().item()
    if diff > atol:
        raise AssertionError(f"{bundle.name}: TorchScript output differs from eager by {diff:.2e} (> {atol})")
    return ts_file
