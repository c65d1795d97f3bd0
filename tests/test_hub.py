"""Hugging Face Hub push/download, against a stand-in for the Hub's HTTP API that follows its documented semantics.

Only the calls that would reach the network are replaced (``HfApi.create_repo``, ``update_repo_settings``,
``list_repo_refs``, ``list_repo_files``, ``create_commit``, ``create_tag``, ``delete_tag`` and
``snapshot_download``); huggingface_hub's own ``upload_folder`` runs, on its single-commit path (``create_commit``,
as without ``hf_xet``), so ``delete_patterns`` is interpreted by the library itself. The stand-in, like the Hub:
keeps every file across commits unless a commit deletes it; makes each commit a revision; resolves branches, tags
and commit hashes (full or 7+ character prefixes); creates a repository with an initial commit holding
``.gitattributes``; refuses an existing tag (409) unless ``exist_ok``, which then leaves the tag where it was; raises
the client's own errors (``RepositoryNotFoundError``, ``RevisionNotFoundError``, ``EntryNotFoundError``) through
``hf_raise_for_status``; hides a private repository from a caller without a token; and ``snapshot_download`` into a
``local_dir`` leaves the client's ``.cache/huggingface/`` folder there.
"""

import hashlib
import inspect
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import fire
import httpx2
import huggingface_hub
import huggingface_hub.hf_api
import monai
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError
from huggingface_hub.hf_api import CommitInfo, GitRefInfo, GitRefs
from huggingface_hub.utils import hf_raise_for_status

from medzoo.cli import main
from medzoo.cli_commands import ZooCLI
from medzoo.errors import USER_ERROR_STATUS, UserFileExistsError
from medzoo.hub import download, model_card, push
from medzoo.package import ReleaseError, folder_files, package_files, write_zip
from medzoo.paths import bundle_names
from medzoo.weights import sha256sum
from medzoo.zoo import INDEX_FILE, Bundle

BUNDLES = bundle_names()
REAL = {
    name: getattr(huggingface_hub.HfApi, name)
    for name in (
        "create_repo",
        "update_repo_settings",
        "list_repo_refs",
        "list_repo_files",
        "create_commit",
        "create_tag",
        "delete_tag",
    )
}
REAL["_validate_yaml"] = huggingface_hub.HfApi._validate_yaml
REAL_SNAPSHOT_DOWNLOAD = huggingface_hub.snapshot_download
#: Hub task ids (``pipeline_tag``) the stand-in accepts: the image tasks listed on huggingface.co/tasks.
HUB_TASKS = {
    "image-classification",
    "image-segmentation",
    "image-feature-extraction",
    "image-to-image",
    "object-detection",
    "depth-estimation",
    "feature-extraction",
}
TOKEN = "hf_test_token"
GITATTRIBUTES = b"*.pt filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def _fail(status: int, error_code: str | None, url: str) -> None:
    """Raise what huggingface_hub raises for this HTTP answer of the Hub."""
    headers = {"X-Error-Code": error_code} if error_code else {}
    hf_raise_for_status(httpx2.Response(status, headers=headers, request=httpx2.Request("GET", url)))
    raise AssertionError("hf_raise_for_status did not raise")


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class LocalHub:
    """The Hub's repositories in memory: commits (path -> bytes), branches and tags pointing at commit hashes."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.calls: list[tuple[str, dict]] = []

    # ---- inspection helpers for the tests
    def files(self, repo_id: str, revision: str) -> dict[str, bytes]:
        return self.repos[repo_id].commits[self._resolve(repo_id, revision)]

    def tamper(self, repo_id: str, revision: str, path: str, content: bytes) -> None:
        """Change a file of a revision in place (a corrupted transfer or a rewritten history)."""
        self.files(repo_id, revision)[path] = content

    # ---- semantics
    def _url(self, repo_id: str, what: str = "") -> str:
        return f"https://huggingface.co/api/models/{repo_id}{what}"

    def _repo(self, repo_id: str, token, write: bool = False) -> Repo:
        repo = self.repos.get(repo_id)
        authenticated = bool(token if isinstance(token, str) else os.environ.get("HF_TOKEN"))
        if repo is None or (repo.private and not authenticated):
            _fail(404, "RepoNotFound", self._url(repo_id))
        if write and not authenticated:
            _fail(401, None, self._url(repo_id))
        return repo

    def _resolve(self, repo_id: str, revision: str | None) -> str:
        repo = self.repos[repo_id]
        revision = revision or "main"
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.tags:
            return repo.tags[revision]
        matches = [oid for oid in repo.commits if len(revision) >= 7 and oid.startswith(revision)]
        if len(matches) == 1:
            return matches[0]
        _fail(404, "RevisionNotFound", self._url(repo_id, f"/revision/{revision}"))

    def _commit(self, repo: Repo, files: dict[str, bytes], message: str) -> str:
        digest = hashlib.sha1(f"{len(repo.commits)}{message}".encode())
        for path in sorted(files):
            digest.update(path.encode() + hashlib.sha256(files[path]).digest())
        oid = digest.hexdigest()
        repo.commits[oid] = files
        return oid

    def install(self, monkeypatch) -> None:
        hub = self

        def token_of(api, token):
            return token if token is not None else api.token

        def create_repo(api, repo_id, **kwargs):
            inspect.signature(REAL["create_repo"]).bind(api, repo_id, **kwargs)
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            token = token_of(api, kwargs.get("token"))
            if not (token if isinstance(token, str) else os.environ.get("HF_TOKEN")):
                _fail(401, None, hub._url(repo_id))
            if repo_id in hub.repos:
                if not kwargs.get("exist_ok", False):
                    _fail(409, None, hub._url(repo_id))
            else:  # the Hub's initial commit holds .gitattributes; private is the Hub's own default only if asked
                repo = hub.repos[repo_id] = Repo(private=bool(kwargs.get("private")))
                repo.branches["main"] = hub._commit(repo, {".gitattributes": GITATTRIBUTES}, "initial commit")
            return huggingface_hub.hf_api.RepoUrl(f"https://huggingface.co/{repo_id}")

        def update_repo_settings(api, repo_id, **kwargs):
            inspect.signature(REAL["update_repo_settings"]).bind(api, repo_id, **kwargs)
            hub.calls.append(("update_repo_settings", {"repo_id": repo_id, **kwargs}))
            repo = hub._repo(repo_id, token_of(api, kwargs.get("token")), write=True)
            if kwargs.get("private") is not None:
                repo.private = kwargs["private"]

        def list_repo_refs(api, repo_id, **kwargs):
            inspect.signature(REAL["list_repo_refs"]).bind(api, repo_id, **kwargs)
            repo = hub._repo(repo_id, token_of(api, kwargs.get("token")))
            return GitRefs(
                branches=[GitRefInfo(b, f"refs/heads/{b}", oid) for b, oid in repo.branches.items()],
                converts=[],
                tags=[GitRefInfo(t, f"refs/tags/{t}", oid) for t, oid in repo.tags.items()],
            )

        def list_repo_files(api, repo_id, **kwargs):
            inspect.signature(REAL["list_repo_files"]).bind(api, repo_id, **kwargs)
            hub._repo(repo_id, token_of(api, kwargs.get("token")))
            return sorted(hub.files(repo_id, kwargs.get("revision")))

        def create_commit(api, repo_id, operations, **kwargs):
            inspect.signature(REAL["create_commit"]).bind(api, repo_id, operations, **kwargs)
            operations = list(operations)
            hub.calls.append(("create_commit", {"repo_id": repo_id, "operations": operations, **kwargs}))
            repo = hub._repo(repo_id, token_of(api, kwargs.get("token")), write=True)
            branch = kwargs.get("revision") or "main"
            if branch not in repo.branches:
                _fail(404, "RevisionNotFound", hub._url(repo_id, f"/commit/{branch}"))
            parent = kwargs.get("parent_commit")
            if parent is not None and not repo.branches[branch].startswith(parent):
                _fail(412, None, hub._url(repo_id, f"/commit/{branch}"))
            files = dict(repo.commits[repo.branches[branch]])
            for op in operations:
                if isinstance(op, CommitOperationDelete):
                    doomed = (
                        [p for p in files if p.startswith(op.path_in_repo.rstrip("/") + "/")]
                        if op.is_folder is True
                        else [op.path_in_repo]
                    )
                    for path in doomed:
                        if path not in files:
                            _fail(404, "EntryNotFound", hub._url(repo_id, f"/blob/{branch}/{path}"))
                        del files[path]
                elif isinstance(op, CommitOperationAdd):
                    with op.as_file() as handle:
                        files[op.path_in_repo] = handle.read()
                else:
                    raise NotImplementedError(f"the stand-in does not implement {type(op).__name__}")
            oid = repo.branches[branch] = hub._commit(repo, files, kwargs["commit_message"])
            return CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}",
                commit_message=kwargs["commit_message"],
                commit_description=kwargs.get("commit_description") or "",
                oid=oid,
            )

        def create_tag(api, repo_id, **kwargs):
            inspect.signature(REAL["create_tag"]).bind(api, repo_id, **kwargs)
            hub.calls.append(("create_tag", {"repo_id": repo_id, **kwargs}))
            repo = hub._repo(repo_id, token_of(api, kwargs.get("token")), write=True)
            oid = hub._resolve(repo_id, kwargs.get("revision"))
            if kwargs["tag"] in repo.tags or kwargs["tag"] in repo.branches:
                if not kwargs.get("exist_ok", False):
                    _fail(409, None, hub._url(repo_id, f"/tag/{kwargs['tag']}"))
                return  # exist_ok: the 409 is ignored, the tag stays where it was
            repo.tags[kwargs["tag"]] = oid

        def delete_tag(api, repo_id, **kwargs):
            inspect.signature(REAL["delete_tag"]).bind(api, repo_id, **kwargs)
            hub.calls.append(("delete_tag", {"repo_id": repo_id, **kwargs}))
            repo = hub._repo(repo_id, token_of(api, kwargs.get("token")), write=True)
            if kwargs["tag"] not in repo.tags:
                _fail(404, "RevisionNotFound", hub._url(repo_id, f"/tag/{kwargs['tag']}"))
            del repo.tags[kwargs["tag"]]

        def validate_yaml(api, content, **kwargs):
            """The Hub's /api/validate-yaml: the front matter is a mapping with a known pipeline_tag, string tags."""
            inspect.signature(REAL["_validate_yaml"]).bind(api, content, **kwargs)
            front = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else {}
            problems = [] if isinstance(front, dict) else ["the front matter is not a mapping"]
            if isinstance(front, dict):
                if "pipeline_tag" in front and front["pipeline_tag"] not in HUB_TASKS:
                    problems.append(f'"pipeline_tag" must be a Hub task, not {front["pipeline_tag"]!r}')
                if not all(isinstance(t, str) and t for t in front.get("tags", [])):
                    problems.append('"tags" must be non-empty strings')
                if not all(isinstance(m, str) for m in front.get("metrics", [])):
                    problems.append('"metrics" must be strings')
            if problems:
                raise ValueError("Invalid metadata in README.md.\n" + "\n".join(f"- {p}" for p in problems))

        def snapshot_download(repo_id, **kwargs):
            inspect.signature(REAL_SNAPSHOT_DOWNLOAD).bind(repo_id, **kwargs)
            hub._repo(repo_id, kwargs.get("token"))
            files = hub.files(repo_id, kwargs.get("revision"))
            local_dir = Path(kwargs["local_dir"])
            for path, content in files.items():  # files already in local_dir and not in the revision stay
                (local_dir / path).parent.mkdir(parents=True, exist_ok=True)
                (local_dir / path).write_bytes(content)
            (local_dir / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
            (local_dir / ".cache" / "huggingface" / ".gitignore").write_text("*")
            return str(local_dir)

        for name, fake in [
            ("create_repo", create_repo),
            ("update_repo_settings", update_repo_settings),
            ("list_repo_refs", list_repo_refs),
            ("list_repo_files", list_repo_files),
            ("create_commit", create_commit),
            ("create_tag", create_tag),
            ("delete_tag", delete_tag),
            ("_validate_yaml", validate_yaml),
        ]:
            monkeypatch.setattr(huggingface_hub.HfApi, name, fake)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
        # module-level functions are bound to a default HfApi at import time; MONAI calls this one
        monkeypatch.setattr(
            huggingface_hub,
            "list_repo_refs",
            lambda repo_id, **kw: list_repo_refs(huggingface_hub.HfApi(), repo_id, **kw),
        )
        # upload_folder's single-commit path (through create_commit), as without hf_xet; same final state
        monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the pusher is logged in; tests drop it to act as anonymous
    local = LocalHub()
    local.install(monkeypatch)
    return local


@pytest.fixture
def index(tmp_path):
    copy = tmp_path / "zoo_index.json"
    shutil.copy(INDEX_FILE, copy)
    return copy


def _fresh_index(path: Path) -> Path:
    """The committed index of a fresh clone: every bundle, no package recorded."""
    data = json.loads(Path(INDEX_FILE).read_text())
    for entry in data["bundles"]:
        entry["packages"] = {}
    path.write_text(json.dumps(data))
    return path


def _package_names(bundle_root: Path) -> set[str]:
    """Files of the package of a bundle folder (vendored medzoo included), relative to the bundle."""
    return {a.split("/", 1)[1] for a, _ in package_files(Bundle(bundle_root))}


def _tree(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".cache/")
    }


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _scratch_bundle(source: Bundle, bundles_dir: Path) -> Path:
    """A copy of a bundle's tracked kind of files in a scratch zoo, with (fake) trained weights."""
    ignore = shutil.ignore_patterns("sample_data", "eval", "runs", "__pycache__", "*.pt", "*.ts", "*.onnx", "*.json.*")
    root = Path(shutil.copytree(source.root, bundles_dir / source.name, ignore=ignore))
    (root / "models" / "model.pt").write_bytes(b"trained weights v1")
    return root


def _set_version(root: Path, version: str) -> None:
    meta_file = root / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["changelog"] = {version: "test release", **meta["changelog"]}
    meta["version"] = version
    meta_file.write_text(json.dumps(meta, indent=4))


@pytest.mark.parametrize("name", BUNDLES)
def test_push_publishes_exactly_the_package_with_a_model_card_and_tags(name, hub, index, tmp_path):
    bundle = Bundle(name)
    meta = bundle.metadata
    result = push(name, "medzoo-test/" + name, index_file=index)
    repo = hub.repos["medzoo-test/" + name]
    assert repo.private is True  # private unless asked otherwise
    assert repo.tags == {meta["version"]: result["commit"], "latest_version": result["commit"]}
    files = hub.files("medzoo-test/" + name, meta["version"])
    assert set(files) == _package_names(bundle.root) | {"README.md", "release.json", ".gitattributes"}
    assert {"configs/metadata.json", "configs/inference.json", "medzoo/__init__.py"} <= set(files)
    assert not [
        f for f in files if f.startswith(("sample_data/", "eval/")) or "__pycache__" in f or f.endswith("checkpoint.pt")
    ]
    release = json.loads(files["release.json"])
    assert release == {
        "name": name,
        "version": meta["version"],
        "file": f"{name}_v{meta['version']}.zip",
        "sha256": result["sha256"],
        "bytes": release["bytes"],
    }

    card = files["README.md"].decode()
    front = _front_matter(card)
    output = next(iter(meta["network_data_format"]["outputs"].values()))
    assert front["library_name"] == "monai" and "monai" in front["tags"] and name in front["tags"]
    assert all(t == t.lower() for t in front["tags"])
    assert front["labels"] == [output["channel_def"][k] for k in sorted(output["channel_def"], key=int)]
    expected_pipeline = (
        "image-classification"
        if "classification" in meta["task"].lower()
        else "image-segmentation"
        if "segmentation" in meta["task"].lower()
        else "image-feature-extraction"
        if "self-supervised" in meta["task"].lower()
        else None
    )
    assert front.get("pipeline_tag") == expected_pipeline
    if meta["eval_metrics"]:  # metric names, each a recorded figure (alone or per class), never setting or counts
        assert front["metrics"] and not {"setting", "num_samples"} & set(front["metrics"])
        assert all(
            name in meta["eval_metrics"] or any(k.startswith(name + "/") for k in meta["eval_metrics"])
            for name in front["metrics"]
        )
    else:
        assert "metrics" not in front and "`eval_metrics` in `configs/metadata.json`" in card and "is empty" in card
    assert "not for clinical use" in card.lower()

    recorded = json.loads(index.read_text())
    entry = next(e for e in recorded["bundles"] if e["name"] == name)
    assert entry["packages"][meta["version"]]["sha256"] == result["sha256"]


@pytest.mark.parametrize("name", BUNDLES)
def test_a_fresh_clone_downloads_and_checks_a_release_and_monai_download_works(name, hub, index, tmp_path):
    version = Bundle(name).metadata["version"]
    sha = push(name, "org/repo", index_file=index)["sha256"]
    clean = _fresh_index(tmp_path / "fresh_index.json")

    folder = download(name, "org/repo", version=version, bundle_dir=tmp_path / "mine", index_file=clean)
    assert (folder / "configs" / "metadata.json").is_file() and not (folder / "README.md").exists()
    assert not (folder / "release.json").exists() and not (folder / ".cache").exists()
    assert sha256sum(write_zip(folder_files(folder, name), tmp_path / "again.zip")) == sha

    monai.bundle.download(
        name=name, source="huggingface_hub", repo="org/repo", version=version, bundle_dir=str(tmp_path / "monai")
    )
    theirs = tmp_path / "monai" / name
    assert json.loads((theirs / "configs" / "metadata.json").read_text())["version"] == version
    assert Bundle(theirs).network().__class__.__name__ == Bundle(name).network().__class__.__name__
    fetched = folder_files(theirs, name, exclude=("README.md", "release.json", ".gitattributes"))
    assert sha256sum(write_zip(fetched, tmp_path / "theirs.zip")) == sha


def test_a_second_version_replaces_the_file_set_and_every_version_downloads_checked(hub, index, tmp_path, cxr_bundle):
    name, bundles = cxr_bundle.name, tmp_path / "bundles"
    root = _scratch_bundle(cxr_bundle, bundles)
    (root / "docs" / "only_in_v1.md").write_text("removed in v2")
    _set_version(root, "9.0.0")
    v1 = push(name, "org/repo", index_file=index, bundles_dir=bundles)
    v1_files = _package_names(root)

    (root / "docs" / "only_in_v1.md").unlink()
    (root / "docs" / "only_in_v2.md").write_text("added in v2")
    (root / "models" / "model.pt").write_bytes(b"trained weights v2")
    _set_version(root, "9.1.0")
    assert hub.repos["org/repo"].private is True
    v2 = push(name, "org/repo", private=False, index_file=index, bundles_dir=bundles)  # --private False: made public
    assert hub.repos["org/repo"].private is False
    v2_files = _package_names(root)
    assert "docs/only_in_v1.md" in v1_files - v2_files and "docs/only_in_v2.md" in v2_files - v1_files

    hub_only = {"README.md", "release.json", ".gitattributes"}
    assert set(hub.files("org/repo", "9.0.0")) == v1_files | hub_only
    assert set(hub.files("org/repo", "9.1.0")) == v2_files | hub_only == set(hub.files("org/repo", "main"))
    assert hub.repos["org/repo"].tags == {"9.0.0": v1["commit"], "9.1.0": v2["commit"], "latest_version": v2["commit"]}

    clean = _fresh_index(tmp_path / "fresh_index.json")  # a fresh clone: no package records
    for version, expected, sha, folder in [
        ("9.0.0", v1_files, v1["sha256"], "a"),
        ("9.1.0", v2_files, v2["sha256"], "b"),
        (None, v2_files, v2["sha256"], "c"),
    ]:
        got = download(name, "org/repo", version=version, bundle_dir=tmp_path / folder, index_file=clean)
        assert _tree(got) == expected
        assert sha256sum(write_zip(folder_files(got, name), tmp_path / f"{folder}.zip")) == sha
    assert (tmp_path / "a" / name / "models" / "model.pt").read_bytes() == b"trained weights v1"
    assert (tmp_path / "c" / name / "models" / "model.pt").read_bytes() == b"trained weights v2"

    for version, expected, folder in [("9.0.0", v1_files, "m1"), ("9.1.0", v2_files, "m2"), (None, v2_files, "m3")]:
        monai.bundle.download(
            name=name, source="huggingface_hub", repo="org/repo", version=version, bundle_dir=str(tmp_path / folder)
        )
        assert _tree(tmp_path / folder / name) == expected | hub_only


def test_a_tampered_release_is_refused_in_one_line_and_nothing_kept(hub, index, tmp_path, cxr_bundle, capsys):
    version = cxr_bundle.metadata["version"]
    push(cxr_bundle.name, "org/repo", index_file=index)
    clean = _fresh_index(tmp_path / "fresh_index.json")
    inference = hub.files("org/repo", version)["configs/inference.json"]
    hub.tamper(
        "org/repo", version, "configs/inference.json", inference.replace(b"SimpleInferer", b"SlidingWindowInferer")
    )
    with pytest.raises(ValueError, match=r"the fetched .* has sha256 .* but its release records .*nothing was kept"):
        download(cxr_bundle.name, "org/repo", version=version, bundle_dir=tmp_path / "dl", index_file=clean)
    assert not (tmp_path / "dl" / cxr_bundle.name).exists()

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "download",
                cxr_bundle.name,
                "--repo",
                "org/repo",
                "--version",
                version,
                "--bundle_dir",
                str(tmp_path / "dl"),
                "--index_file",
                str(clean),
            ]
        )
    assert exit_info.value.code == USER_ERROR_STATUS
    shown = capsys.readouterr()
    assert shown.err.startswith("error: org/repo@") and shown.err.count("\n") == 1 and "nothing was kept" in shown.err
    assert "Traceback" not in shown.err
    assert not (tmp_path / "dl" / cxr_bundle.name).exists()


def test_a_release_and_the_index_must_agree(hub, index, tmp_path, cxr_bundle):
    version = cxr_bundle.metadata["version"]
    push(cxr_bundle.name, "org/repo", index_file=index)
    data = json.loads(index.read_text())
    entry = next(e for e in data["bundles"] if e["name"] == cxr_bundle.name)
    entry["packages"][version]["sha256"] = "0" * 64
    index.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"records {'0' * 64}; the two disagree"):
        download(cxr_bundle.name, "org/repo", version=version, bundle_dir=tmp_path / "dl", index_file=index)
    assert not (tmp_path / "dl" / cxr_bundle.name).exists()


def test_download_errors_are_one_clear_line(hub, index, tmp_path, cxr_bundle):
    clean = str(_fresh_index(tmp_path / "fresh_index.json"))
    cli = ZooCLI()
    with pytest.raises(ReleaseError, match="org/repo: no such repository"):
        cli.download(cxr_bundle.name, "org/repo", bundle_dir=str(tmp_path), index_file=clean)
    push(cxr_bundle.name, "org/repo", index_file=index)
    with pytest.raises(ReleaseError, match="^org/repo has no release v9.9.9;"):
        cli.download(cxr_bundle.name, "org/repo", version="9.9.9", bundle_dir=str(tmp_path), index_file=clean)
    with pytest.raises(ReleaseError, match="is a release of 'cxr14_densenet121_classification', not of 'other'"):
        cli.download("other", "org/repo", bundle_dir=str(tmp_path / "x"), index_file=clean)
    (tmp_path / "dl" / cxr_bundle.name).mkdir(parents=True)
    (tmp_path / "dl" / cxr_bundle.name / "mine.txt").write_text("x")
    with pytest.raises(UserFileExistsError, match="exists and is not empty: choose another --bundle_dir"):
        cli.download(cxr_bundle.name, "org/repo", bundle_dir=str(tmp_path / "dl"), index_file=clean)
    assert [p.name for p in (tmp_path / "dl" / cxr_bundle.name).iterdir()] == ["mine.txt"]


def test_a_released_version_is_immutable_and_versions_go_up(hub, index, tmp_path, cxr_bundle):
    name, bundles = cxr_bundle.name, tmp_path / "bundles"
    root = _scratch_bundle(cxr_bundle, bundles)
    _set_version(root, "9.1.0")
    push(name, "org/repo", index_file=index, bundles_dir=bundles)
    commits = len(hub.repos["org/repo"].commits)
    (root / "configs" / "quick.json").write_text("{}")
    with pytest.raises(ValueError, match="already has cxr14_densenet121_classification v9.1.0: a released version"):
        push(name, "org/repo", index_file=index, bundles_dir=bundles)
    _set_version(root, "9.0.5")
    with pytest.raises(ValueError, match="already has v9.1.0, newer than v9.0.5: push versions in increasing order"):
        push(name, "org/repo", index_file=index, bundles_dir=bundles)
    assert len(hub.repos["org/repo"].commits) == commits  # refused before anything was uploaded


def test_private_by_default_and_public_on_request(hub, index, tmp_path, cxr_bundle, monkeypatch, capsys):
    clean = _fresh_index(tmp_path / "fresh_index.json")
    fire.Fire(
        ZooCLI, command=["push", cxr_bundle.name, "--repo", "org/private", "--index_file", str(index)], name="medzoo"
    )
    assert "tagged it and latest_version" in capsys.readouterr().out
    fire.Fire(
        ZooCLI,
        command=["push", cxr_bundle.name, "--repo", "org/public", "--private", "False", "--index_file", str(index)],
        name="medzoo",
    )
    assert hub.repos["org/private"].private is True and hub.repos["org/public"].private is False
    monkeypatch.delenv("HF_TOKEN")  # anyone else, not logged in
    with pytest.raises(ValueError, match="org/private: no such repository, or it is private"):
        download(cxr_bundle.name, "org/private", bundle_dir=tmp_path / "a", index_file=clean)
    assert download(cxr_bundle.name, "org/public", bundle_dir=tmp_path / "b", index_file=clean).is_dir()


def test_model_card_renders_the_recorded_eval_metrics(tmp_path, cxr_bundle):
    root = _scratch_bundle(cxr_bundle, tmp_path / "bundles")
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    meta["eval_metrics"] = {"mean_auroc": 0.8123, "per_class_auroc": {"Atelectasis": 0.79}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    card = model_card(Bundle(root))
    assert _front_matter(card)["metrics"] == ["mean_auroc", "per_class_auroc"]
    assert "| mean_auroc | 0.8123 |" in card and "| per_class_auroc/Atelectasis | 0.79 |" in card
    # as record_eval_metrics writes them: per-class entries flattened, with the run's setting and sample count
    meta["eval_metrics"] = {
        "mean_dice": 0.9,
        "mean_dice_per_class/liver": 0.91,
        "mean_dice_non_finite": 0,
        "num_samples": 18,
        "setting": "medzoo quickstart x",
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    card = model_card(Bundle(root))
    assert _front_matter(card)["metrics"] == ["mean_dice", "mean_dice_per_class"]
    assert "| num_samples | 18 |" in card and "| setting | medzoo quickstart x |" in card
    assert "is empty" not in card
    tags = _front_matter(card)["tags"]
    assert "xray" in tags and "classification" in tags and _front_matter(card)["pipeline_tag"] == "image-classification"


# ---- the stand-in itself follows the Hub (and the finding it must be able to show)


def test_the_stand_in_keeps_files_unless_deleted_and_refuses_what_the_hub_refuses(hub, tmp_path):
    api = huggingface_hub.HfApi()
    api.create_repo(repo_id="org/r", exist_ok=True)
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "a.txt").write_text("a")
    (tmp_path / "v1" / "old.txt").write_text("old")
    first = api.upload_folder(repo_id="org/r", folder_path=tmp_path / "v1")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "a.txt").write_text("a2")
    api.upload_folder(repo_id="org/r", folder_path=tmp_path / "v2")  # no delete_patterns: old.txt stays
    assert set(hub.files("org/r", "main")) == {".gitattributes", "a.txt", "old.txt"}
    api.upload_folder(repo_id="org/r", folder_path=tmp_path / "v2", delete_patterns="*")
    assert set(hub.files("org/r", "main")) == {".gitattributes", "a.txt"}  # .gitattributes is never deleted
    assert hub.files("org/r", first.oid[:7])["old.txt"] == b"old"  # an earlier commit is still a revision

    api.create_tag(repo_id="org/r", tag="1.0", revision=first.oid)
    with pytest.raises(HfHubHTTPError):
        api.create_tag(repo_id="org/r", tag="1.0")
    api.create_tag(repo_id="org/r", tag="1.0", exist_ok=True)  # ignored, not moved
    assert hub.repos["org/r"].tags["1.0"] == first.oid
    with pytest.raises(RevisionNotFoundError):
        huggingface_hub.snapshot_download(repo_id="org/r", revision="2.0", local_dir=str(tmp_path / "x"))
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo_id="org/r", tag="2.0")
    with pytest.raises(EntryNotFoundError):
        api.create_commit(repo_id="org/r", operations=[CommitOperationDelete("missing.txt")], commit_message="x")
