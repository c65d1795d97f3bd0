"""Hugging Face Hub push/download for every bundle, with only huggingface_hub's transport replaced by a local folder."""

import inspect
import json
import shutil
from pathlib import Path

import huggingface_hub
import monai
import pytest
import yaml

from medzoo.hub import download, push
from medzoo.package import folder_files, write_zip
from medzoo.paths import bundle_names
from medzoo.weights import sha256sum
from medzoo.zoo import INDEX_FILE, Bundle

BUNDLES = bundle_names()
REAL_SNAPSHOT_DOWNLOAD = huggingface_hub.snapshot_download
REAL_API = {name: getattr(huggingface_hub.HfApi, name) for name in ("create_repo", "upload_folder", "create_tag")}


def _bind_real(name, *args, **kwargs) -> None:
    """Fail like the real client would on a wrong argument."""
    inspect.signature(REAL_API[name]).bind(*args, **kwargs)


class LocalHub:
    """A Hub stand-in: ``<root>/<org>/<name>/main`` is the branch, ``.../tags/<tag>`` a tagged snapshot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, list[str]] = {}

    def repo(self, repo_id: str) -> Path:
        return self.root / repo_id

    def install(self, monkeypatch) -> None:
        hub = self

        def create_repo(api, repo_id, **kwargs):
            _bind_real("create_repo", api, repo_id, **kwargs)
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            hub.repo(repo_id).mkdir(parents=True, exist_ok=True)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(api, *, repo_id, folder_path, **kwargs):
            _bind_real("upload_folder", api, repo_id=repo_id, folder_path=folder_path, **kwargs)
            hub.calls.append(("upload_folder", {"repo_id": repo_id, "folder_path": folder_path, **kwargs}))
            main = hub.repo(repo_id) / "main"
            assert hub.repo(repo_id).is_dir(), "upload before create_repo"
            shutil.rmtree(main, ignore_errors=True)
            shutil.copytree(folder_path, main)
            hub.uploaded[repo_id] = sorted(p.relative_to(main).as_posix() for p in main.rglob("*") if p.is_file())
            return f"commit of {repo_id}"

        def create_tag(api, repo_id, *, tag, exist_ok=False, **kwargs):
            _bind_real("create_tag", api, repo_id, tag=tag, exist_ok=exist_ok, **kwargs)
            hub.calls.append(("create_tag", {"repo_id": repo_id, "tag": tag, "exist_ok": exist_ok, **kwargs}))
            target = hub.repo(repo_id) / "tags" / tag
            if target.exists() and not exist_ok:
                raise ValueError(f"tag {tag} exists")
            shutil.copytree(hub.repo(repo_id) / "main", target, dirs_exist_ok=True)

        def snapshot_download(repo_id, **kwargs):
            inspect.signature(REAL_SNAPSHOT_DOWNLOAD).bind(repo_id, **kwargs)  # the caller uses the real API
            source = hub.repo(repo_id) / "tags" / kwargs["revision"]
            if not source.is_dir():
                raise FileNotFoundError(f"{repo_id}@{kwargs['revision']} does not exist")
            local_dir = Path(kwargs["local_dir"])
            shutil.copytree(source, local_dir, dirs_exist_ok=True)
            (local_dir / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)  # as the real client leaves it
            (local_dir / ".cache" / "huggingface" / ".gitignore").write_text("*")
            return str(local_dir)

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_tag", create_tag)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    local = LocalHub(tmp_path / "hub")
    local.install(monkeypatch)
    return local


@pytest.fixture
def index(tmp_path):
    copy = tmp_path / "zoo_index.json"
    shutil.copy(INDEX_FILE, copy)
    return copy


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.mark.parametrize("name", BUNDLES)
def test_push_uploads_the_package_with_a_model_card_and_tags_the_version(name, hub, index, tmp_path):
    bundle = Bundle(name)
    meta = bundle.metadata
    result = push(name, "medzoo-test/" + name, index_file=index)
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder", "create_tag"]
    assert hub.calls[2][1]["tag"] == meta["version"] and hub.calls[2][1]["exist_ok"] is False
    files = hub.uploaded["medzoo-test/" + name]
    assert {"README.md", "configs/metadata.json", "configs/inference.json", "medzoo/__init__.py"} <= set(files)
    assert not [f for f in files if f.startswith(("sample_data/", "eval/")) or "__pycache__" in f]

    card = (hub.repo("medzoo-test/" + name) / "main" / "README.md").read_text()
    front = _front_matter(card)
    output = next(iter(meta["network_data_format"]["outputs"].values()))
    assert front["library_name"] == "monai" and "monai" in front["tags"] and name in front["tags"]
    assert front["labels"] == [output["channel_def"][k] for k in sorted(output["channel_def"], key=int)]
    assert front["metrics"] == sorted(meta["eval_metrics"])
    assert "not for clinical use" in card.lower()

    recorded = json.loads(index.read_text())
    entry = next(e for e in recorded["bundles"] if e["name"] == name)
    assert entry["packages"][meta["version"]]["sha256"] == result["sha256"]


@pytest.mark.parametrize("name", BUNDLES)
def test_download_checks_the_index_sha256_and_monai_download_works(name, hub, index, tmp_path):
    version = Bundle(name).metadata["version"]
    sha = push(name, "org/repo", index_file=index)["sha256"]

    folder = download(name, "org/repo", version=version, bundle_dir=tmp_path / "mine", index_file=index)
    assert (folder / "configs" / "metadata.json").is_file() and not (folder / "README.md").exists()
    assert sha256sum(write_zip(folder_files(folder, name), tmp_path / "again.zip")) == sha

    monai.bundle.download(name=name, source="huggingface_hub", repo="org/repo", version=version,
                          bundle_dir=str(tmp_path / "monai"))
    theirs = tmp_path / "monai" / name
    assert json.loads((theirs / "configs" / "metadata.json").read_text())["version"] == version
    assert Bundle(theirs).network().__class__.__name__ == Bundle(name).network().__class__.__name__
    fetched = folder_files(theirs, name, exclude=("README.md",))
    assert sha256sum(write_zip(fetched, tmp_path / "theirs.zip")) == sha


def test_download_of_a_tampered_repository_keeps_nothing(hub, index, tmp_path, cxr_bundle):
    version = cxr_bundle.metadata["version"]
    push(cxr_bundle.name, "org/repo", index_file=index)
    inference = hub.repo("org/repo") / "tags" / version / "configs" / "inference.json"
    inference.write_text(inference.read_text().replace("SimpleInferer", "SlidingWindowInferer"))
    with pytest.raises(ValueError, match="has sha256 .* but the index records"):
        download(cxr_bundle.name, "org/repo", version=version, bundle_dir=tmp_path / "dl", index_file=index)
    assert not (tmp_path / "dl" / cxr_bundle.name).exists()


def test_download_needs_a_recorded_version_and_an_empty_destination(hub, index, tmp_path, cxr_bundle):
    with pytest.raises(KeyError, match="no package of .* v9.9.9 is recorded"):
        download(cxr_bundle.name, "org/repo", version="9.9.9", bundle_dir=tmp_path, index_file=index)
    push(cxr_bundle.name, "org/repo", index_file=index)
    (tmp_path / "dl" / cxr_bundle.name).mkdir(parents=True)
    (tmp_path / "dl" / cxr_bundle.name / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        download(cxr_bundle.name, "org/repo", bundle_dir=tmp_path / "dl", index_file=index)


def test_a_released_version_cannot_change_content(hub, index, tmp_path, cxr_bundle):
    bundles = tmp_path / "bundles"
    shutil.copytree(cxr_bundle.root / "configs", bundles / cxr_bundle.name / "configs")
    for extra in ("docs", "LICENSE"):
        source = cxr_bundle.root / extra
        (shutil.copytree if source.is_dir() else shutil.copy)(source, bundles / cxr_bundle.name / extra)
    push(cxr_bundle.name, "org/repo", index_file=index, bundles_dir=bundles)
    (bundles / cxr_bundle.name / "configs" / "quick.json").write_text("{}")
    with pytest.raises(ValueError, match="was packaged before with sha256 .* bump the version"):
        push(cxr_bundle.name, "org/repo", index_file=index, bundles_dir=bundles)
    assert [c[0] for c in hub.calls].count("upload_folder") == 1
