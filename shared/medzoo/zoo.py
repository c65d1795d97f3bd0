"""The zoo as data: reading bundles, and building ``zoo_index.json`` from them."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import yaml
from monai.bundle import ConfigParser

from .errors import UserError, UserFileNotFoundError
from .fileio import atomic_write_text
from .networks.complexity import count_parameters
from .paths import BUNDLES_DIR, REPO_ROOT, bundle_names

__all__ = [
    "INDEX_FILE",
    "RECORD_KEYS",
    "Bundle",
    "build_index",
    "bundle_info",
    "bundle_table",
    "check_index",
    "read_index",
    "record",
    "records_of",
    "selected_bundles",
    "write_index",
]

INDEX_FILE = REPO_ROOT / "zoo_index.json"

#: Index keys that hold facts measured or produced by tools, not derived from the bundle folder. ``build_index``
#: carries them over from the index on disk; :func:`record` writes them.
#:
#: - ``packages``: ``{version: {"file", "sha256", "bytes", "weights"}}``, written by ``medzoo package``;
#: - ``benchmark``: ``{"version", "latency_ms_b1", "throughput_img_s", "peak_memory_mb", "size_mb", "machine",
#:   "measured_at"}`` (any subset), written by the benchmark tooling; ``None`` until measured;
#: - ``memory``: ``{"version", "peak_memory_mb", "task", "volume_shape", "spacing_mm", "reference_ratio", "machine",
#:   "measured_at", "report"}``: peak resident memory of the bundle's inference on a whole input of the stated size,
#:   written by ``benchmarks/volume_memory.py``; ``None`` until measured.
RECORD_KEYS = {"packages": {}, "benchmark": None, "memory": None}


class Bundle:
    """A bundle folder read as data: metadata, config files, declared weight files.

    Example::

        b = Bundle("cxr14_densenet121_classification")
        b.metadata["version"], b.configs, b.network().__class__.__name__
    """

    def __init__(self, name_or_path: str | os.PathLike, bundles_dir: str | os.PathLike = BUNDLES_DIR) -> None:
        """``name_or_path``: a bundle folder (holding ``configs/metadata.json``) or the name of one in ``bundles_dir``.

        Raises:
            medzoo.errors.UserFileNotFoundError: neither (the message lists the known bundles).
        """
        path = Path(name_or_path)
        if not (path / "configs" / "metadata.json").is_file():
            path = Path(bundles_dir) / str(name_or_path)
        if not (path / "configs" / "metadata.json").is_file():
            known = ", ".join(bundle_names(bundles_dir)) if Path(bundles_dir).is_dir() else "none"
            raise UserFileNotFoundError(
                f"no bundle '{name_or_path}' (known bundles: {known}); name one of them, or "
                f"a bundle folder holding configs/metadata.json"
            )
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
        return sorted(
            p.name for p in (self.root / "configs").iterdir() if p.suffix in (".json", ".yaml", ".yml", ".conf")
        )

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
    files = [
        {"path": f["path"], "sha256": f.get("hash_val")} for f in bundle.large_files if f.get("hash_type") == "sha256"
    ]
    if "sha256" in weights:
        files.append({"path": "models/model.pt", "sha256": weights["sha256"]})
    return files


def index_entry(bundle: Bundle, records: dict | None = None) -> dict:
    """One ``zoo_index.json`` entry, computed from the bundle's files (the network is instantiated to count
    parameters), plus the tool-written ``records`` (see :data:`RECORD_KEYS`) of the previous index entry."""
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
        "parameters": count_parameters(network),
        "inputs": {k: _tensor_summary(v) for k, v in fmt["inputs"].items()},
        "outputs": {k: _tensor_summary(v) for k, v in outputs.items()},
        "labels": [
            first_output.get("channel_def", {})[k] for k in sorted(first_output.get("channel_def", {}), key=int)
        ],
        "configs": bundle.configs,
        "weights": {"status": weights["status"], "files": _weight_files(bundle, weights)},
        "intended_use": meta["intended_use"],
        **{key: (records or {}).get(key, copy.deepcopy(default)) for key, default in RECORD_KEYS.items()},
        **({"performance": meta["performance"]} if "performance" in meta else {}),
    }


def read_index(path: str | os.PathLike = INDEX_FILE) -> dict:
    """The index on disk, or an empty one if there is no file yet."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {"bundles": []}


def _records_by_name(index: dict) -> dict[str, dict]:
    return {e["name"]: {k: e[k] for k in RECORD_KEYS if k in e} for e in index.get("bundles", [])}


def records_of(name: str, index_file: str | os.PathLike = INDEX_FILE) -> dict:
    """The tool-written records (:data:`RECORD_KEYS`) of bundle ``name`` in the index, ``{}`` if none."""
    return _records_by_name(read_index(index_file)).get(name, {})


def _build(bundles_dir: str | os.PathLike, records: dict[str, dict]) -> dict:
    return {
        "description": "Generated by `medzoo index` from bundles/; do not edit by hand.",
        "bundles": [index_entry(Bundle(name, bundles_dir), records.get(name)) for name in bundle_names(bundles_dir)],
    }


def build_index(bundles_dir: str | os.PathLike = BUNDLES_DIR, index_file: str | os.PathLike = INDEX_FILE) -> dict:
    """The full index: ``{"bundles": [entry, ...]}`` sorted by bundle name; records come from ``index_file``."""
    return _build(bundles_dir, _records_by_name(read_index(index_file)))


def write_index(path: str | os.PathLike = INDEX_FILE, bundles_dir: str | os.PathLike = BUNDLES_DIR) -> Path:
    """Rebuild the index (keeping the records already in ``path``) and write it atomically to ``path``."""
    atomic_write_text(path, json.dumps(build_index(bundles_dir, path), indent=2) + "\n")
    return Path(path)


def record(
    name: str,
    key: str,
    value: dict,
    index_file: str | os.PathLike = INDEX_FILE,
    bundles_dir: str | os.PathLike = BUNDLES_DIR,
) -> dict:
    """Store a tool-written fact about bundle ``name`` under ``key`` (one of :data:`RECORD_KEYS`) in the index.

    ``packages`` values (``{version: {...}}``) are merged per version; ``benchmark`` replaces the previous
    measurement. The rest of the index is rebuilt from the bundles at the same time. Returns the bundle's entry.
    """
    if key not in RECORD_KEYS:
        raise KeyError(f"unknown index record '{key}'; known: {sorted(RECORD_KEYS)}")
    if name not in bundle_names(bundles_dir):
        raise FileNotFoundError(f"no bundle '{name}' under {bundles_dir}")
    records = _records_by_name(read_index(index_file))
    mine = records.setdefault(name, {})
    mine[key] = {**(mine.get(key) or {}), **value} if key == "packages" else value
    index = _build(bundles_dir, records)
    atomic_write_text(index_file, json.dumps(index, indent=2) + "\n")
    return next(e for e in index["bundles"] if e["name"] == name)


def selected_bundles(
    bundle: str | os.PathLike | None = None, bundles_dir: str | os.PathLike = BUNDLES_DIR
) -> list[Bundle]:
    """The bundle ``bundle`` (a name or a folder) as a one-item list, or every bundle under ``bundles_dir`` if None."""
    if bundle is not None:
        return [Bundle(bundle, bundles_dir)]
    return [Bundle(name, bundles_dir) for name in bundle_names(bundles_dir)]


def bundle_table(bundles_dir: str | os.PathLike = BUNDLES_DIR) -> str:
    """One line per bundle under ``bundles_dir``: name (40 columns), version (8 columns), task."""
    lines = []
    for bundle in selected_bundles(None, bundles_dir):
        meta = bundle.metadata
        lines.append(f"{bundle.name:40s} {meta['version']:8s} {meta['task']}")
    return "\n".join(lines)


def bundle_info(bundle: str | os.PathLike, index_file: str | os.PathLike = INDEX_FILE) -> dict:
    """The index entry of ``bundle`` (a name or a folder) computed from its files now, with the records (packages,
    benchmark, memory) that ``index_file`` holds for its name."""
    found = Bundle(bundle)
    return index_entry(found, records_of(found.name, index_file))


def check_index(path: str | os.PathLike = INDEX_FILE, bundles_dir: str | os.PathLike = BUNDLES_DIR) -> Path:
    """Check that the index at ``path`` is what :func:`build_index` makes from the bundles now; return ``path``.

    Raises:
        medzoo.errors.UserError: the file is missing or stale (the message says to run ``medzoo index``).
    """
    path = Path(path)
    current = json.loads(path.read_text()) if path.is_file() else None
    if current != build_index(bundles_dir, path):
        raise UserError(f"{path} is {'stale' if current is not None else 'missing'}: run `medzoo index` to rebuild it")
    return path
