"""Publishing bundles to the Hugging Face Hub and fetching them back, checked against ``zoo_index.json``.

A Hub repository holds one bundle as ``monai.bundle.download(source="huggingface_hub")`` expects it: the unpacked
package (``configs/``, ``models/``, ``docs/``, the vendored ``medzoo/``, ...) at the repository root, plus the model
card ``README.md``; each version is a git tag. ``monai.bundle.download(name=..., source="huggingface_hub",
repo="org/name", version="0.1.0")`` therefore yields a runnable bundle folder.

:func:`download` is the checked path: it fetches the tag into a scratch folder, re-creates the reproducible package
from exactly the fetched files and compares its sha256 with the one ``medzoo package``/``push`` recorded in the index;
only a match is extracted (zip-slip-safe) into the destination. Anything else is deleted and reported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import huggingface_hub

from .package import folder_files, package_bundle, recorded_package, safe_extract, write_zip
from .weights import sha256sum
from .zoo import INDEX_FILE, Bundle, read_index

__all__ = ["CARD_FILE", "HUB_ONLY_FILES", "download", "model_card", "push"]

CARD_FILE = "README.md"
#: Files a Hub repository has beside the bundle: not part of the package, hence not part of its sha256.
HUB_ONLY_FILES = (CARD_FILE, ".gitattributes")
DISCLAIMER = ("**Research model, not for clinical use.** It is not a medical device and must not be used for diagnosis "
              "or patient management.")


def _license_id(bundle: Bundle) -> str:
    text = (bundle.root / "LICENSE").read_text() if (bundle.root / "LICENSE").is_file() else ""
    return "apache-2.0" if "Apache License, Version 2.0" in text else "other"


def _task_tags(task: str) -> list[str]:
    words = ("classification", "segmentation", "registration", "detection", "self-supervised", "regression")
    return [w for w in words if w in task.lower()]


def model_card(bundle: Bundle) -> str:
    """The Hub model card: YAML front matter from the metadata, the disclaimer, then the bundle's ``docs/README.md``.

    Front matter: ``library_name: monai``, ``license``, ``tags`` (monai, medical-imaging, modalities, task words,
    bundle name), ``metrics`` (names of ``eval_metrics``), ``labels`` (output ``channel_def`` names) and ``version``.
    """
    meta = bundle.metadata
    fmt = meta["network_data_format"]
    modalities = sorted({spec.get("modality") for spec in fmt["inputs"].values()} - {None, "n/a"})
    output = next(iter(fmt["outputs"].values()))
    labels = [output.get("channel_def", {})[k] for k in sorted(output.get("channel_def", {}), key=int)]
    data = huggingface_hub.ModelCardData(
        library_name="monai",
        license=_license_id(bundle),
        tags=["monai", "medical-imaging", *modalities, *_task_tags(meta["task"]), bundle.name],
        metrics=sorted(meta.get("eval_metrics", {})),
        labels=labels,
        version=meta["version"],
    )
    metric_rows = "".join(f"| {k} | {v} |\n" for k, v in sorted(meta.get("eval_metrics", {}).items()))
    metrics = f"| metric | value |\n|---|---|\n{metric_rows}" if metric_rows else "No evaluation figures are recorded.\n"
    docs = (bundle.root / "docs" / "README.md").read_text()
    body = (
        f"# {meta['name']} (v{meta['version']})\n\n> {DISCLAIMER}\n\n{meta['description']}\n\n"
        f"Intended use: {meta['intended_use']}\n\nLabels: {', '.join(labels)}\n\n## Evaluation (metadata `eval_metrics`)\n"
        f"{metrics}\n## Use\n```python\nimport monai\nmonai.bundle.download(name=\"{bundle.name}\", "
        f"source=\"huggingface_hub\", repo=\"<org>/<repo>\", version=\"{meta['version']}\", bundle_dir=\"bundles\")\n```\n"
        f"Then `cd bundles/{bundle.name}` and `python -m monai.bundle run --config_file configs/inference.json`.\n\n"
        f"---\n\n{docs}"
    )
    return huggingface_hub.ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").content


def push(name: str, repo: str, private: bool = True, token: str | None = None, index_file: str | os.PathLike = INDEX_FILE,
         bundles_dir: str | os.PathLike | None = None) -> dict:
    """Package ``name``, upload the unpacked package with its model card to ``repo``, and tag it with the version.

    The package sha256 is recorded in the index first; a version already recorded with other content is refused
    (see :func:`medzoo.package.package_bundle`), and so is an existing tag (``create_tag(exist_ok=False)``).

    Returns:
        ``{"repo", "version", "sha256", "commit"}`` (``commit`` is what ``upload_folder`` returned).
    """
    bundle = Bundle(name) if bundles_dir is None else Bundle(name, bundles_dir)
    version = bundle.metadata["version"]
    with tempfile.TemporaryDirectory(prefix=f"push_{bundle.name}_") as tmp:
        package = package_bundle(name, tmp, index_file=index_file, bundles_dir=bundles_dir)
        folder = safe_extract(package["path"], Path(tmp) / "unpacked") / bundle.name
        (folder / CARD_FILE).write_text(model_card(bundle))
        api = huggingface_hub.HfApi(token=token)
        api.create_repo(repo_id=repo, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=f"{bundle.name} v{version}")
        api.create_tag(repo_id=repo, tag=version, tag_message=f"sha256 {package['sha256']}", exist_ok=False)
    return {"repo": repo, "version": version, "sha256": package["sha256"], "commit": commit}


def download(name: str, repo: str, version: str | None = None, bundle_dir: str | os.PathLike = "downloads",
             token: str | None = None, index_file: str | os.PathLike = INDEX_FILE) -> Path:
    """Fetch ``name`` at ``version`` (default: the version in the index) from ``repo`` into ``bundle_dir/<name>``.

    The fetched files are re-packaged reproducibly and their sha256 must equal the index's record for that version;
    then the checked package is extracted into place. On a mismatch nothing is kept.

    Raises:
        KeyError: no package of that version is recorded in the index (nothing to check against).
        ValueError: the fetched bundle's sha256 differs from the record.
        FileExistsError: ``bundle_dir/<name>`` exists and is not empty.
    """
    entry = next((e for e in read_index(index_file)["bundles"] if e["name"] == name), None)
    if entry is None:
        raise KeyError(f"'{name}' is not in {index_file}")
    version = version or entry["version"]
    expected = recorded_package(name, version, index_file)
    if expected is None:
        raise KeyError(f"no package of {name} v{version} is recorded in {index_file} (recorded: "
                       f"{sorted(entry.get('packages') or {}) or 'none'}); cannot check a download against it")
    destination = Path(bundle_dir) / name
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination} exists and is not empty")
    with tempfile.TemporaryDirectory(prefix=f"download_{name}_") as tmp:
        fetched = Path(tmp) / "fetched"
        huggingface_hub.snapshot_download(repo_id=repo, revision=version, local_dir=str(fetched), token=token)
        archive = write_zip(folder_files(fetched, name, exclude=HUB_ONLY_FILES), Path(tmp) / expected["file"])
        actual = sha256sum(archive)
        if actual != expected["sha256"]:
            raise ValueError(f"{repo}@{version}: the fetched {name} has sha256 {actual}, but the index records "
                             f"{expected['sha256']} for v{version}; nothing was kept")
        unpacked = safe_extract(archive, Path(tmp) / "unpacked") / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            destination.rmdir()
        shutil.move(str(unpacked), destination)
    return destination
