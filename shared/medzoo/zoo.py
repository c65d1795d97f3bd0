"""The zoo as data: reading bundles, and building ``zoo_index.json`` from them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from monai.bundle import ConfigParser

from .fileio import atomic_write_text
from .paths import BUNDLES_DIR, REPO_ROOT, bundle_names

__all__ = ["Bundle", "build_index", "write_index", "INDEX_FILE"]

INDEX_FILE = REPO_ROOT / "zoo_index.json"


class Bundle:
    """A bundle folder read as data: metadata, config files, declared weight files.

    Example::

        b = Bundle("cxr14_densenet121_classification")
        b.metadata["version"], b.configs, b.network().__class__.__name__
    """

    def __init__(self, name_or_path: str | os.PathLike, bundles_dir: str | os.PathLike = BUNDLES_DIR) -> None:
        path = Path(name_or_path)
        if not (path / "configs" / "metadata.json").is_file():
            path = Path(bundles_dir) / str(name_or_path)
        if not (path / "configs" / "metadata.json").is_file():
            known = ", ".join(bundle_names(bundles_dir)) if Path(bundles_dir).is_dir() else "none"
            raise FileNotFoundError(f"no bundle '{name_or_path}' (known bundles: {known})")
        self.root = path.resolve()
        self.name = self.root.name

    @property
    def metadata_file(self) -> Path:
        return self.root / "configs" / "metadata.json"

    @property
    def metadata(self) -> dict:
        with open(self.metadata_file) as f:
            return json.load(f)

    @property
    def configs(self) -> list[str]:
        """Config file names present in ``configs/``, sorted."""
        return sorted(p.name for p in (self.root / "configs").iterdir() if p.suffix in (".json", ".yaml", ".yml", ".conf"))

    def config_path(self, name: str) -> Path:
        return self.root / "configs" / name

    def parser(self, *config_names: str, **overrides) -> ConfigParser:
        """A :class:`ConfigParser` over the given configs (merged in order) with metadata and ``bundle_root`` set."""
        parser = ConfigParser()
        parser.read_config([str(self.config_path(n)) for n in config_names])
        parser.read_meta(str(self.metadata_file))
        parser["bundle_root"] = str(self.root)
        parser.update(overrides)
        return parser

    def network(self, config_name: str = "inference.json"):
        """Instantiate ``network_def`` of a config (weights as initialised by the constructor)."""
        return self.parser(config_name).get_parsed_content("network_def")

    @property
    def large_files(self) -> list[dict]:
        """Entries of ``large_files.yml`` (``path``, ``url``, ``hash_val``, ``hash_type``), or [] if there is none."""
        for name in ("large_files.yml", "large_files.yaml"):
            f = self.root / name
            if f.is_file():
                with open(f) as fh:
                    return list((yaml.safe_load(fh) or {}).get("large_files") or [])
        return []


def _tensor_summary(spec: dict) -> dict:
    keys = ("type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range")
    return {k: spec.get(k) for k in keys}


def _weight_files(bundle: Bundle, weights: dict) -> list[dict]:
    """Weight files with their sha256: those declared in ``large_files.yml`` and a converted ``models/model.pt``."""
    files = [{"path": f["path"], "sha256": f.get("hash_val")} for f in bundle.large_files if f.get("hash_type") == "sha256"]
    if "sha256" in weights:
        files.append({"path": "models/model.pt", "sha256": weights["sha256"]})
    return files


def index_entry(bundle: Bundle) -> dict:
    """One ``zoo_index.json`` entry, computed from the bundle's files (the network is instantiated to count
    parameters)."""
    meta = bundle.metadata
    fmt = meta["network_data_format"]
    network = bundle.network()
    network_target = bundle.parser("inference.json").get("network_def", {}).get("_target_", "")
    outputs = fmt["outputs"]
    first_output = next(iter(outputs.values()))
    weights = meta.get("weights", {"status": "init"})
    return {
        "name": bundle.name,
        "display_name": meta["name"],
        "version": meta["version"],
        "task": meta["task"],
        "modality": sorted({spec.get("modality", "n/a") for spec in fmt["inputs"].values()}),
        "network": network_target,
        "parameters": sum(p.numel() for p in network.parameters()),
        "inputs": {k: _tensor_summary(v) for k, v in fmt["inputs"].items()},
        "outputs": {k: _tensor_summary(v) for k, v in outputs.items()},
        "labels": [first_output.get("channel_def", {})[k] for k in sorted(first_output.get("channel_def", {}), key=int)],
        "configs": bundle.configs,
        "weights": {"status": weights["status"], "files": _weight_files(bundle, weights)},
        "intended_use": meta["intended_use"],
        **({"performance": meta["performance"]} if "performance" in meta else {}),
    }


def build_index(bundles_dir: str | os.PathLike = BUNDLES_DIR) -> dict:
    """The full index: ``{"bundles": [entry, ...]}`` sorted by bundle name."""
    return {
        "description": "Generated by `medzoo index` from bundles/; do not edit by hand.",
        "bundles": [index_entry(Bundle(name, bundles_dir)) for name in bundle_names(bundles_dir)],
    }


def write_index(path: str | os.PathLike = INDEX_FILE, bundles_dir: str | os.PathLike = BUNDLES_DIR) -> Path:
    """Rebuild the index and write it (atomically) to ``path``."""
    atomic_write_text(path, json.dumps(build_index(bundles_dir), indent=2) + "\n")
    return Path(path)
