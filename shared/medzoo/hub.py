"""Publishing bundles to the Hugging Face Hub and fetching them back, each version checked against its sha256.

A Hub repository holds one bundle as ``monai.bundle.download(source="huggingface_hub")`` expects it: the unpacked
package (``configs/``, ``models/``, ``docs/``, the vendored ``medzoo/``, ...) at the repository root, plus two files
that are not part of the package: the model card ``README.md`` and ``release.json``
(``{"name", "version", "file", "sha256", "bytes"}`` of the package zip). Layout of the refs:

- one commit per pushed version on ``main``, holding exactly that package's files (``upload_folder`` with
  ``delete_patterns="*"``: the files of earlier versions that this one no longer has are deleted in the same commit;
  the Hub keeps ``.gitattributes`` whatever the patterns);
- a tag per version (``0.1.0``) on that commit, never moved: a version already tagged is refused, and so is a version
  lower than one already tagged (versions are pushed in increasing order, so ``main`` is always the newest);
- the tag ``latest_version`` moved to the newest commit (deleted and created again: the Hub does not move a tag).
  ``monai.bundle.download`` without a ``version`` takes this tag (MONAI's own name for it); without it, MONAI takes
  whichever tag the Hub lists last.

:func:`download` fetches a version (default ``latest_version``) into a scratch folder, re-creates the reproducible
package from exactly the fetched files (everything but ``README.md``, ``release.json``, ``.gitattributes`` and the
client's ``.cache/``) and compares its sha256 with ``release.json`` at that revision and, when the index
(``zoo_index.json``) records a package of that version, with the index too; the two records must agree. Only a match
is extracted into the destination; anything else is deleted and reported. A fresh clone (no package records in the
index) can therefore download and check any release.

What the check proves: ``release.json`` travels with the files, so a match shows the files arrived as the pusher
uploaded them (no truncated or mixed-up transfer, no leftovers of another version). It does not prove who made them:
anyone with write access to the repository can replace files and ``release.json`` together. The index record is
stronger when present, because it comes from this project's git history; trust in a release without one rests on
the access control of the Hub repository. The model card is not part of the package and is not checked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import huggingface_hub
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from packaging.version import InvalidVersion, Version

from .archives import safe_extract
from .errors import UserFileExistsError
from .eval_metrics import metric_names
from .package import ReleaseError, package_bundle, recorded_package, write_zip
from .weights import sha256sum
from .zoo import INDEX_FILE, Bundle

__all__ = ["CARD_FILE", "HUB_ONLY_FILES", "LATEST_TAG", "RELEASE_FILE", "download", "model_card", "push"]

CARD_FILE = "README.md"
RELEASE_FILE = "release.json"
#: The tag ``monai.bundle.download`` takes when no version is given.
LATEST_TAG = "latest_version"
#: Files a Hub repository has beside the bundle: not part of the package, hence not part of its sha256.
HUB_ONLY_FILES = (CARD_FILE, RELEASE_FILE, ".gitattributes")
#: Folder the Hugging Face client writes its own metadata to inside a ``local_dir``.
CLIENT_CACHE = ".cache"
DISCLAIMER = (
    "**Research model, not for clinical use.** It is not a medical device and must not be used for diagnosis "
    "or patient management."
)
#: Hub ``pipeline_tag`` by task word; a task without one (registration, motion) gets none.
PIPELINE_TAGS = {
    "classification": "image-classification",
    "segmentation": "image-segmentation",
    "self-supervised": "image-feature-extraction",
}
TASK_WORDS = (
    "classification",
    "segmentation",
    "registration",
    "displacement",
    "detection",
    "self-supervised",
    "regression",
)


def _license_id(bundle: Bundle) -> str:
    text = (bundle.root / "LICENSE").read_text() if (bundle.root / "LICENSE").is_file() else ""
    return "apache-2.0" if "Apache License, Version 2.0" in text else "other"


def _task_words(task: str) -> list[str]:
    return [w for w in TASK_WORDS if w in task.lower()]


def _tag(word: str) -> str:
    """A Hub tag: lowercase, spaces as hyphens (``X-ray`` -> ``x-ray``, ``MR`` -> ``mr``)."""
    return "-".join(word.lower().split())


def _metric_rows(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    """``eval_metrics`` as ``(name, value)`` rows; nested objects become ``outer/inner`` names."""
    rows = []
    for key, value in sorted(metrics.items()):
        if isinstance(value, dict) and value:
            rows += _metric_rows(value, f"{prefix}{key}/")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def model_card(bundle: Bundle) -> str:
    """The Hub model card: YAML front matter from the metadata, the disclaimer, then the bundle's ``docs/README.md``.

    Front matter: ``library_name: monai``, ``license``, ``pipeline_tag`` (from the task, :data:`PIPELINE_TAGS`; none
    for registration and motion), ``tags`` (monai, medical-imaging, the modalities, task words and bundle name, all
    lowercase), ``metrics`` (the metric names of ``eval_metrics``, :func:`medzoo.eval_metrics.metric_names`, only when
    there are some), ``labels`` (output ``channel_def`` names) and ``version``. The body's evaluation section lists
    every ``eval_metrics`` entry as recorded, or says that the metadata records none.
    """
    meta = bundle.metadata
    fmt = meta["network_data_format"]
    modalities = sorted({spec.get("modality") for spec in fmt["inputs"].values()} - {None, "n/a"})
    output = next(iter(fmt["outputs"].values()))
    labels = [output.get("channel_def", {})[k] for k in sorted(output.get("channel_def", {}), key=int)]
    task_words = _task_words(meta["task"])
    pipeline_tag = next((PIPELINE_TAGS[w] for w in task_words if w in PIPELINE_TAGS), None)
    eval_metrics = meta.get("eval_metrics") or {}
    tags = list(dict.fromkeys(_tag(t) for t in ["monai", "medical-imaging", *modalities, *task_words, bundle.name]))
    card_data = {
        "library_name": "monai",
        "license": _license_id(bundle),
        "tags": tags,
        "labels": labels,
        "version": meta["version"],
    }
    if pipeline_tag:
        card_data["pipeline_tag"] = pipeline_tag
    if names := metric_names(eval_metrics):
        card_data["metrics"] = names
    data = huggingface_hub.ModelCardData(**card_data)
    rows = _metric_rows(eval_metrics)
    metrics = (
        "| metric | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
        if rows
        else f"None: `eval_metrics` in `configs/metadata.json` of v{meta['version']} is empty, so this card quotes "
        "no evaluation figures.\n"
    )
    docs = (bundle.root / "docs" / "README.md").read_text()
    body = (
        f"# {meta['name']} (v{meta['version']})\n\n> {DISCLAIMER}\n\n{meta['description']}\n\n"
        f"Intended use: {meta['intended_use']}\n\nLabels: {', '.join(labels)}\n\n## Evaluation (metadata `eval_metrics`)\n"
        f'{metrics}\n## Use\n```python\nimport monai\nmonai.bundle.download(name="{bundle.name}", '
        f'source="huggingface_hub", repo="<org>/<repo>", version="{meta["version"]}", bundle_dir="bundles")\n```\n'
        f"Then `cd bundles/{bundle.name}` and `python -m monai.bundle run --config_file configs/inference.json`. "
        f"`medzoo download {bundle.name} --repo <org>/<repo> --version {meta['version']}` fetches the same files and "
        f"checks them against the package sha256 in `{RELEASE_FILE}`.\n\n---\n\n{docs}"
    )
    return huggingface_hub.ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").content


def _version_tags(refs) -> dict[str, Version]:
    """Tags of a repository that are versions, parsed (``latest_version`` and other names left out)."""
    versions = {}
    for tag in refs.tags:
        try:
            versions[tag.name] = Version(tag.name)
        except InvalidVersion:
            continue
    return versions


def push(
    name: str,
    repo: str,
    private: bool | None = None,
    token: str | None = None,
    index_file: str | os.PathLike = INDEX_FILE,
    bundles_dir: str | os.PathLike | None = None,
) -> dict:
    """Publish the bundle's current version to ``repo``: one commit holding exactly its package, the model card and
    ``release.json``; the version tag on it; ``latest_version`` moved to it.

    Args:
        private: visibility. ``None`` (default): a new repository is private, an existing one keeps its visibility;
            ``True`` / ``False``: the repository is made private / public (created so, or its setting changed).

    Refused before anything is uploaded: a version the repository already has (a released version is immutable), a
    version lower than one it has, and a version packaged before with other content
    (:func:`medzoo.package.package_bundle`). The package sha256 is also recorded in ``index_file``.

    Returns:
        ``{"repo", "version", "sha256", "commit"}`` (``commit``: the hash of the commit the tags point to).
    """
    bundle = Bundle(name) if bundles_dir is None else Bundle(name, bundles_dir)
    version = bundle.metadata["version"]
    api = huggingface_hub.HfApi(token=token)
    api.create_repo(repo_id=repo, private=True if private is None else private, exist_ok=True)
    if private is not None:
        api.update_repo_settings(repo_id=repo, private=private)
    refs = api.list_repo_refs(repo_id=repo)
    released = _version_tags(refs)
    if version in released:
        raise ReleaseError(
            f"{repo} already has {bundle.name} v{version}: a released version is immutable; bump the "
            "version in configs/metadata.json (and its changelog) and push again"
        )
    newer = sorted((v for v in released.values() if v > Version(version)), reverse=True)
    if newer:
        raise ReleaseError(f"{repo} already has v{newer[0]}, newer than v{version}: push versions in increasing order")
    with tempfile.TemporaryDirectory(prefix=f"push_{bundle.name}_") as tmp:
        package = package_bundle(name, tmp, index_file=index_file, bundles_dir=bundles_dir)
        folder = safe_extract(package["path"], Path(tmp) / "unpacked") / bundle.name
        (folder / CARD_FILE).write_text(model_card(bundle))
        release = {
            "name": bundle.name,
            "version": version,
            "file": package["file"],
            "sha256": package["sha256"],
            "bytes": package["bytes"],
        }
        (folder / RELEASE_FILE).write_text(json.dumps(release, indent=2) + "\n")
        commit = api.upload_folder(
            repo_id=repo,
            folder_path=str(folder),
            commit_message=f"{bundle.name} v{version}",
            commit_description=f"package sha256 {package['sha256']}",
            delete_patterns="*",
        )
    api.create_tag(
        repo_id=repo, tag=version, revision=commit.oid, tag_message=f"sha256 {package['sha256']}", exist_ok=False
    )
    if LATEST_TAG in {t.name for t in refs.tags}:
        api.delete_tag(repo_id=repo, tag=LATEST_TAG)
    api.create_tag(
        repo_id=repo, tag=LATEST_TAG, revision=commit.oid, tag_message=f"{bundle.name} v{version}", exist_ok=False
    )
    return {"repo": repo, "version": version, "sha256": package["sha256"], "commit": commit.oid}


def _fetched_entries(folder: Path, top: str) -> list[tuple[str, Path]]:
    """Every file of a fetched revision as ``(name in the zip, path)`` under ``top/``, except :data:`HUB_ONLY_FILES`
    and the client's ``.cache/`` folder; nothing else is left out, so a stray file changes the sha256."""
    entries = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative in HUB_ONLY_FILES or relative.split("/", 1)[0] == CLIENT_CACHE or path.is_dir():
            continue
        if path.is_symlink() or not path.is_file():
            raise ReleaseError(f"{relative} in the fetched files is not a regular file; nothing was kept")
        entries.append((str(PurePosixPath(top) / relative), path))
    return entries


def _read_release(fetched: Path, where: str, name: str, version: str | None) -> dict:
    """``release.json`` of a fetched revision, checked to be a release of ``name`` (at ``version`` if given)."""
    try:
        release = json.loads((fetched / RELEASE_FILE).read_text())
        release_name, release_version, sha256 = release["name"], release["version"], release["sha256"]
    except FileNotFoundError:
        raise ReleaseError(
            f"{where} has no {RELEASE_FILE}: not a release made by `medzoo push`, nothing to check "
            "it against; nothing was kept"
        ) from None
    except (ValueError, KeyError, TypeError) as error:
        raise ReleaseError(f"{where}: {RELEASE_FILE} is not a release record ({error!r}); nothing was kept") from None
    if release_name != name:
        raise ReleaseError(f"{where} is a release of '{release_name}', not of '{name}'; nothing was kept")
    if version is not None and release_version != version:
        raise ReleaseError(f"{where}: {RELEASE_FILE} says v{release_version}, not v{version}; nothing was kept")
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ReleaseError(f"{where}: {RELEASE_FILE} has no valid sha256; nothing was kept")
    return release


def download(
    name: str,
    repo: str,
    version: str | None = None,
    bundle_dir: str | os.PathLike = "downloads",
    token: str | None = None,
    index_file: str | os.PathLike | None = INDEX_FILE,
) -> Path:
    """Fetch ``name`` at ``version`` (default: the ``latest_version`` tag) from ``repo`` into ``bundle_dir/<name>``.

    The fetched files are re-packaged reproducibly; their sha256 must equal ``release.json`` at that revision and,
    when ``index_file`` records a package of that version, the index's sha256 as well (module docstring). Only then
    is the checked package extracted into place; otherwise nothing is kept.

    Raises:
        ReleaseError: no such repository or version, not a medzoo release, the index and the release disagree, or
            the fetched files do not match (the message says which).
        medzoo.errors.UserFileExistsError: ``bundle_dir/<name>`` exists and is not empty.
    """
    destination = Path(bundle_dir) / name
    if destination.exists() and any(destination.iterdir()):
        raise UserFileExistsError(f"{destination} exists and is not empty: choose another --bundle_dir or remove it")
    revision = version or LATEST_TAG
    where = f"{repo}@{revision}"
    with tempfile.TemporaryDirectory(prefix=f"download_{name}_") as tmp:
        fetched = Path(tmp) / "fetched"
        try:
            huggingface_hub.snapshot_download(repo_id=repo, revision=revision, local_dir=str(fetched), token=token)
        except RevisionNotFoundError:
            what = f"no release v{version}" if version else f"no '{LATEST_TAG}' tag (nothing pushed by `medzoo push`)"
            raise ReleaseError(
                f"{repo} has {what}; its tags are listed on the Hub under 'Files and versions'"
            ) from None
        except RepositoryNotFoundError:
            raise ReleaseError(
                f"{repo}: no such repository, or it is private and no token with access to it is "
                "set (`hf auth login` or HF_TOKEN)"
            ) from None
        release = _read_release(fetched, where, name, version)
        release_version = release["version"]
        recorded = recorded_package(name, release_version, index_file) if index_file is not None else None
        if recorded is not None and recorded["sha256"] != release["sha256"]:
            raise ReleaseError(
                f"{where}: {RELEASE_FILE} gives sha256 {release['sha256']} for v{release_version}, but "
                f"{index_file} records {recorded['sha256']}; the two disagree, nothing was kept"
            )
        archive = write_zip(_fetched_entries(fetched, name), Path(tmp) / f"{name}_v{release_version}.zip")
        actual = sha256sum(archive)
        if actual != release["sha256"]:
            raise ReleaseError(
                f"{where}: the fetched {name} v{release_version} has sha256 {actual}, but its release "
                f"records {release['sha256']}; nothing was kept"
            )
        unpacked = safe_extract(archive, Path(tmp) / "unpacked") / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            destination.rmdir()
        shutil.move(str(unpacked), destination)
    return destination
