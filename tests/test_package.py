"""Reproducible, self-contained packages, parametrised over every bundle (extraction: tests/test_safety.py)."""

import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from bundle_sets import smallest_of_each_configuration

from medzoo.archives import safe_extract
from medzoo.package import package_bundle, write_package
from medzoo.paths import REPO_ROOT, bundle_names
from medzoo.weights import sha256sum, write_frozen_init_weights, write_init_weights
from medzoo.zoo import INDEX_FILE, Bundle, build_index

BUNDLES = bundle_names()


def _copy_bundle(name: str, bundles_dir: Path) -> Path:
    """A copy of the bundle's tracked kind of files (no local weights or outputs) in a scratch zoo."""
    ignore = shutil.ignore_patterns("sample_data", "eval", "runs", "__pycache__", "*.pt", "*.ts", "*.onnx")
    return Path(shutil.copytree(Bundle(name).root, bundles_dir / name, ignore=ignore))


@pytest.mark.parametrize("name", BUNDLES)
def test_package_is_byte_identical_and_normalised(name, tmp_path):
    copy = _copy_bundle(name, tmp_path / "bundles")
    first = write_package(Bundle(copy), tmp_path / "a.zip")
    os.utime(copy / "configs" / "metadata.json", (0, 0))  # timestamps and permissions must not leak in
    os.chmod(copy / "LICENSE", 0o600)
    second = write_package(Bundle(copy), tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert all(n.startswith(f"{name}/") for n in names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {stat.S_IFREG | 0o644}
    assert f"{name}/configs/inference.json" in names and f"{name}/medzoo/__init__.py" in names
    (copy / "configs" / "metadata.json").write_text(Bundle(copy).metadata_file.read_text() + " ")
    assert write_package(Bundle(copy), tmp_path / "c.zip").read_bytes() != first.read_bytes()  # content does count


def test_generated_data_caches_and_symlinks_are_not_packaged(tmp_path, cxr_bundle):
    copy = _copy_bundle(cxr_bundle.name, tmp_path / "bundles")
    for junk in (
        "sample_data/images/x.png",
        "eval/predictions.csv",
        "runs/events",
        "configs/__pycache__/a.pyc",
        "docs/.DS_Store",
    ):
        (copy / junk).parent.mkdir(parents=True, exist_ok=True)
        (copy / junk).write_text("junk")
    (copy / "models" / "model.pt").write_bytes(b"weights")
    with zipfile.ZipFile(write_package(Bundle(copy), tmp_path / "p.zip")) as archive:
        names = archive.namelist()
    junk = ("/sample_data/", "/eval/", "/runs/", "__pycache__", ".DS_Store")
    assert not [n for n in names if any(part in n for part in junk)]
    assert f"{cxr_bundle.name}/models/model.pt" in names  # weights present in the folder are part of a release
    (copy / "configs" / "link.json").symlink_to("/etc/hostname")
    with pytest.raises(ValueError, match="link.json is a symbolic link"):
        write_package(Bundle(copy), tmp_path / "q.zip")


def test_package_sha256_is_recorded_in_the_index_and_kept_on_rebuild(tmp_path, cxr_bundle):
    bundles = tmp_path / "bundles"
    _copy_bundle(cxr_bundle.name, bundles)
    index = tmp_path / "zoo_index.json"
    shutil.copy(INDEX_FILE, index)
    result = package_bundle(cxr_bundle.name, tmp_path / "dist", index_file=index, bundles_dir=bundles)
    version = cxr_bundle.metadata["version"]
    assert Path(result["path"]).name == f"{cxr_bundle.name}_v{version}.zip"
    entry = next(e for e in json.loads(index.read_text())["bundles"] if e["name"] == cxr_bundle.name)
    assert entry["packages"][version]["sha256"] == sha256sum(result["path"]) == result["sha256"]
    assert entry["packages"][version]["weights"] == []
    rebuilt = next(e for e in build_index(bundles, index)["bundles"] if e["name"] == cxr_bundle.name)
    assert rebuilt["packages"] == entry["packages"]


def _clean_env() -> dict:
    """Environment for a Python that sees site-packages only: no repository, no editable install, no PYTHONPATH."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
    }


def _clean_python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # -S: no site module, hence no .pth file (an editable install of the repository is a .pth file)
    return subprocess.run(
        [sys.executable, "-S", *args],
        check=False,
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_clean_interpreter_cannot_import_the_repository(tmp_path):
    probe = _clean_python("-c", "import json, sys; print(json.dumps(sys.path)); import medzoo", cwd=tmp_path)
    assert "No module named 'medzoo'" in probe.stderr
    path = json.loads(probe.stdout)
    # a virtual environment inside the checkout is fine; the checkout or its shared layer on the path is not
    assert str(REPO_ROOT) not in path and str(REPO_ROOT / "shared") not in path


def _requirements(distribution: str) -> list[str]:
    """Names of what ``distribution`` requires (extras left out), normalised."""
    names = [
        re.match(r"[A-Za-z0-9_.\-]+", r).group(0)
        for r in importlib.metadata.requires(distribution) or []
        if "extra ==" not in r
    ]
    return [n.lower().replace("_", "-") for n in names]


def _closure(distributions) -> set[str]:
    """The distributions and everything they require, recursively (installed ones only)."""
    seen: set[str] = set()
    todo = [d.lower().replace("_", "-") for d in distributions]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(_requirements(name))
        except importlib.metadata.PackageNotFoundError:
            pass
    return seen


def _undeclared_modules(bundle: Bundle) -> list[str]:
    """Top-level modules of the zoo's own dependencies that a package of ``bundle`` may not count on: those of every
    distribution medzoo requires that is neither monai/torch/numpy/fire nor listed in the bundle's metadata (nor required
    by one of those). The vendored medzoo itself does not count: its requirements are what is being checked."""
    meta = bundle.metadata
    listed = {*meta["required_packages_version"], *meta.get("optional_packages_version", {})} - {"medzoo"}
    available = _closure({"monai", "torch", "numpy", "fire", *listed})  # fire: MONAI's own command line
    modules: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            modules.setdefault(distribution.lower().replace("_", "-"), set()).add(module)
    absent = set()
    for distribution in set(_requirements("medzoo")) - available:
        # a metapackage (itk) provides its modules through its own parts (itk-core, itk-io, ...)
        parts = [distribution] + [r for r in _requirements(distribution) if r.startswith(f"{distribution}-")]
        absent |= {m for part in parts for m in modules.get(part, ())}
    return sorted(absent)


#: ``python -m monai.bundle run`` of each config list in ``sys.argv[2:]``, one after the other, in one interpreter in
#: which the top-level modules listed in ``sys.argv[1]`` cannot be imported; then prints where medzoo came from.
_RUN_WITHOUT_MODULES = """
import importlib.abc, importlib.util, runpy, sys
absent, configs = set(sys.argv[1].split(",")), sys.argv[2:]
class Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):  # found (find_spec probes succeed), never imported
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name.partition(".")[0] in absent else None
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (not listed in the bundle's metadata)", name=spec.name)
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Absent())
for config in configs:
    sys.argv = ["monai.bundle", "run", "--config_file", config]
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
import medzoo
print(medzoo.__file__)
"""


def test_undeclared_modules_follow_the_metadata(cxr_bundle):
    absent = _undeclared_modules(cxr_bundle)
    assert {"timm", "sklearn", "nibabel", "itk"} <= set(absent)
    assert not {"PIL", "pydicom", "ignite", "monai", "torch", "numpy", "fire"} & set(absent)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n for n in smallest_of_each_configuration() if "sample_data.json" in Bundle(n).configs]
)
def test_unpacked_package_runs_inference_without_the_repository(name, tmp_path):
    """In a Python that sees neither the repository nor the zoo's dependencies that the bundle's metadata does not
    list, the unpacked package generates its sample data and runs inference with its vendored medzoo."""
    bundle = Bundle(name)
    archive = write_package(Bundle(_copy_bundle(name, tmp_path / "bundles")), tmp_path / "p.zip")
    root = safe_extract(archive, tmp_path / "unpacked") / name
    write_init_weights(bundle, root / "models" / "model.pt")
    write_frozen_init_weights(Bundle(root))  # e.g. the MI bundle's motion network, kept in its own models/

    quick = ",'configs/quick.json'" if "quick.json" in bundle.configs else ""
    run = _clean_python(
        "-c",
        _RUN_WITHOUT_MODULES,
        ",".join(_undeclared_modules(bundle)),
        f"['configs/sample_data.json'{quick}]",
        "configs/inference.json",
        cwd=root,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert Path(run.stdout.strip().splitlines()[-1]).parent == (root / "medzoo").resolve()
    output_dir = Path(Bundle(root).parser("inference.json", bundle_root=str(root)).get_parsed_content("output_dir"))
    written = [p for p in output_dir.rglob("*") if p.is_file()]
    assert written and all(p.stat().st_size > 0 for p in written)


def test_cli_package_records_into_the_given_index(tmp_path, capsys, cxr_bundle):
    import fire

    from medzoo.cli_commands import ZooCLI

    index = tmp_path / "zoo_index.json"
    shutil.copy(INDEX_FILE, index)
    fire.Fire(
        ZooCLI,
        command=["package", cxr_bundle.name, "--output_dir", str(tmp_path), "--index_file", str(index)],
        name="medzoo",
    )
    zip_file = tmp_path / f"{cxr_bundle.name}_v{cxr_bundle.metadata['version']}.zip"
    assert f"sha256 {sha256sum(zip_file)}" in capsys.readouterr().out
    assert sha256sum(zip_file) in index.read_text()


def test_a_symlinked_folder_is_refused(tmp_path, cxr_bundle):
    copy = _copy_bundle(cxr_bundle.name, tmp_path / "bundles")
    (copy / "extra").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match="extra is a symbolic link"):
        write_package(Bundle(copy), tmp_path / "p.zip")


def test_packages_hold_only_the_weights_inference_and_fine_tuning_read(tmp_path, cxr_bundle):
    """After training, models/ also holds the resume checkpoint (optimizer state), exports and their reports: none of
    them is packaged; model.pt / model.safetensors are, and the frozen motion weights the MI bundle declares."""
    copy = _copy_bundle(cxr_bundle.name, tmp_path / "bundles")
    resume = Path(Bundle(copy).parser("train.json").get_parsed_content("checkpoint_file"))
    assert resume.parent == copy / "models"
    for name in (
        resume.name,
        "model.pt",
        "model.safetensors",
        "model.onnx",
        "model.onnx.json",
        "model.ts",
        "model_int8_dynamic.onnx",
        "model_int8_dynamic.json",
        "simclr_pretrained.pt",
    ):
        (copy / "models" / name).write_bytes(b"weights or report")
    (copy / "configs" / "stray.pth").write_bytes(b"weights")
    index = tmp_path / "zoo_index.json"
    shutil.copy(INDEX_FILE, index)
    result = package_bundle(cxr_bundle.name, tmp_path / "dist", index_file=index, bundles_dir=tmp_path / "bundles")
    with zipfile.ZipFile(result["path"]) as archive:
        models = sorted(n.split("/", 1)[1] for n in archive.namelist() if "/models/" in n or n.endswith(".pth"))
    assert models == ["models/README.md", "models/model.pt", "models/model.safetensors"]
    assert result["weights"] == ["models/model.pt", "models/model.safetensors"]
    assert f"models/{resume.name}" in result["left_out"] and "configs/stray.pth" in result["left_out"]

    mi = _copy_bundle("cmr_mi_segmentation", tmp_path / "bundles")
    for name in ("model.pt", "motion_model.pt", "checkpoint.pt"):
        (mi / "models" / name).write_bytes(b"weights")
    with zipfile.ZipFile(write_package(Bundle(mi), tmp_path / "mi.zip")) as archive:
        models = sorted(n.split("/", 1)[1] for n in archive.namelist() if "/models/" in n)
    assert models == ["models/README.md", "models/model.pt", "models/motion_model.pt"]


def test_cli_package_force_repackages_an_unpublished_version(tmp_path, capsys, cxr_bundle):
    from medzoo.cli import main
    from medzoo.cli_commands import ZooCLI
    from medzoo.errors import USER_ERROR_STATUS

    copy = _copy_bundle(cxr_bundle.name, tmp_path / "bundles")
    (copy / "models" / "model.pt").write_bytes(b"first training")
    index = tmp_path / "zoo_index.json"
    shutil.copy(INDEX_FILE, index)
    cli, version = ZooCLI(), cxr_bundle.metadata["version"]
    cli.package(str(copy), output_dir=str(tmp_path / "dist"), index_file=str(index))
    (copy / "models" / "model.pt").write_bytes(b"retrained")
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["package", str(copy), "--output_dir", str(tmp_path / "dist"), "--index_file", str(index)])
    assert refused.value.code == USER_ERROR_STATUS
    message = capsys.readouterr().err
    assert message.startswith(f"error: {cxr_bundle.name} v{version} was packaged before") and "--force" in message
    assert message.count("\n") == 1 and "Traceback" not in message
    path = cli.package(str(copy), output_dir=str(tmp_path / "dist"), index_file=str(index), force=True)
    entry = next(e for e in json.loads(index.read_text())["bundles"] if e["name"] == cxr_bundle.name)
    assert entry["packages"][version]["sha256"] == sha256sum(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.read(f"{cxr_bundle.name}/models/model.pt") == b"retrained"
