"""Untrusted files: pickled code in weights, tampered downloads, hostile archives, code in bundle configs."""

import ast
import io
import json
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from medzoo.archives import UnsafeArchiveError, safe_extract
from medzoo.cli_commands import ZooCLI
from medzoo.config_review import review_bundle_configs, review_config
from medzoo.downloads import fetch, verify_sha256
from medzoo.paths import REPO_ROOT, bundle_names
from medzoo.weights import (
    ChecksumError,
    convert_weights,
    is_safetensors,
    load_state_dict,
    load_weights,
    save_weights,
    sha256sum,
)
from medzoo.zoo import Bundle


class _CreatesMarker:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for any code a malicious checkpoint could carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------------------------------------------ weights


def test_model_pt_with_pickle_payload_is_refused_and_never_runs(tmp_path, cxr_bundle):
    marker = tmp_path / "payload_ran"
    model = tmp_path / "models" / "model.pt"
    model.parent.mkdir()
    state = cxr_bundle.network().state_dict()
    torch.save({**state, "__payload__": _CreatesMarker(str(marker))}, model)
    with pytest.raises(ValueError, match="model.pt is not a safe checkpoint"):
        load_state_dict(model)
    from medzoo.handlers import LoadWeights

    with pytest.raises(ValueError, match="not a safe checkpoint"):
        LoadWeights(model, cxr_bundle.network()).attach(None)
    assert not marker.exists()


def _calls(tree: ast.AST, module: str, function: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == function
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == module
    ]


def _weights_only(call: ast.Call) -> bool:
    return any(
        k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords
    )


def test_no_unsafe_deserialisation_outside_the_one_loader():
    """torch.load only in medzoo/weights.py, always weights_only=True; no pickle/np allow_pickle anywhere."""
    found = []
    code = [p for folder in ("shared", "bundles", "benchmarks") for p in (REPO_ROOT / folder).rglob("*.py")]
    for path in code:
        tree = ast.parse(path.read_text())
        for call in _calls(tree, "torch", "load"):
            if path.name != "weights.py" or not _weights_only(call):
                found.append(f"{path}:{call.lineno}: torch.load")
        for function in ("load", "loads", "Unpickler"):
            found += [f"{path}:{c.lineno}: pickle.{function}" for c in _calls(tree, "pickle", function)]
        found += [
            f"{path}:{n.lineno}: allow_pickle=True"
            for n in ast.walk(tree)
            if isinstance(n, ast.keyword) and n.arg == "allow_pickle" and getattr(n.value, "value", None) is True
        ]
    for path in (REPO_ROOT / "bundles").rglob("*"):
        if path.suffix in (".json", ".yaml", ".yml"):
            text = path.read_text()
            found += [
                f"{path}: {m.group(0)}"
                for m in re.finditer(r"(torch\.load|pickle\.loads?|allow_pickle\s*=\s*True)", text)
            ]
    assert found == []


def test_the_scan_above_would_catch_an_unsafe_load(tmp_path):
    tree = ast.parse("import torch\nx = torch.load('m.pt')\ny = torch.load('m.pt', weights_only=True)")
    assert [_weights_only(c) for c in _calls(tree, "torch", "load")] == [False, True]


def test_safetensors_round_trip_and_content_sniffing(tmp_path):
    network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    network(torch.zeros(1, 1, 8, 8))
    pt = save_weights(network.state_dict(), tmp_path / "model.pt")
    st = convert_weights(pt, tmp_path / "model.safetensors")
    assert is_safetensors(st) and not is_safetensors(pt)
    loaded = load_state_dict(st)
    assert all(torch.equal(loaded[k], v) for k, v in network.state_dict().items())
    renamed = tmp_path / "renamed.pt"  # a safetensors file under a .pt name is still read as safetensors
    renamed.write_bytes(st.read_bytes())
    assert load_state_dict(renamed).keys() == loaded.keys()
    back = convert_weights(st, tmp_path / "back.pt")
    assert all(torch.equal(load_state_dict(back)[k], v) for k, v in loaded.items())
    with pytest.raises(ValueError, match="suffix must be one of"):
        convert_weights(pt, tmp_path / "model.bin")


def test_damaged_weight_files_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt is empty"):
        load_weights(empty)
    st = save_weights({"w": torch.ones(64)}, tmp_path / "w.safetensors")
    st.write_bytes(st.read_bytes()[:-40])
    with pytest.raises(ValueError, match="w.safetensors is not a readable safetensors file"):
        load_weights(st)


def test_init_weights_as_safetensors_and_missing_file_hint(tmp_path, capsys, cxr_bundle):
    import fire

    out = tmp_path / "model.safetensors"
    fire.Fire(
        ZooCLI, command=["init-weights", cxr_bundle.name, f"--output={out}", "--format=safetensors"], name="medzoo"
    )
    assert is_safetensors(out)
    from medzoo.handlers import LoadWeights

    network = cxr_bundle.network()
    LoadWeights(out, network).attach(None)  # loads strictly
    with pytest.raises(FileNotFoundError, match=r"model.safetensors is there: pass it with --ckpt_path"):
        LoadWeights(tmp_path / "model.pt", network).attach(None)


def _chexnet_checkpoint(path: Path) -> Path:
    """A checkpoint in arnoweng/CheXNet's public layout (``module.densenet121.`` keys, old dense-layer names), random."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(1024, 14), torch.nn.Sigmoid())
    state = {
        re.sub(r"(\.denselayer\d+\.)(norm|conv)([12])\.", r"\1\2.\3.", f"module.densenet121.{k}"): v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save({"epoch": 1, "state_dict": state}, path)
    return path


def _run_inference(bundle: Path, png: Path, output_dir: Path):
    """``python -m monai.bundle run`` of the bundle's inference.json from its folder, as its README says."""
    import os
    import subprocess
    import sys

    import medzoo

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(medzoo.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            "configs/inference.json",
            "--input",
            str(png),
            "--output_dir",
            str(output_dir),
            "--num_workers",
            "0",
            "--batch_size",
            "1",
        ],
        cwd=bundle,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_tampered_weights_of_a_converted_bundle_are_refused(tmp_path, cxr_bundle):
    import numpy as np
    from PIL import Image

    bundle = Path(
        ZooCLI().convert(
            "chexnet",
            str(_chexnet_checkpoint(tmp_path / "model.pth.tar")),
            str(tmp_path / "cxr14_chexnet"),
            bundle=str(cxr_bundle.root),
        )
    )
    weights = bundle / "models" / "model.pt"
    recorded = json.loads((bundle / "configs" / "metadata.json").read_text())["weights"]["sha256"]
    assert recorded == sha256sum(weights)
    png = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(png)

    untouched = _run_inference(bundle, png, tmp_path / "eval_ok")
    assert untouched.returncode == 0, untouched.stderr[-3000:]
    assert (tmp_path / "eval_ok" / "predictions.csv").is_file()

    state = load_state_dict(weights)
    state["class_layers.out.bias"] = state["class_layers.out.bias"] + 1.0  # a file that loads and runs, differently
    torch.save(state, weights)
    tampered = _run_inference(bundle, png, tmp_path / "eval_tampered")
    assert tampered.returncode != 0
    assert "Traceback" not in tampered.stderr, tampered.stderr[-3000:]  # a user error: one line
    refusal = next(line for line in tampered.stderr.splitlines() if line.startswith("error: "))
    assert refusal.split("error: ")[1].startswith("models/model.pt: sha256 mismatch"), refusal
    assert f"sha256 mismatch (expected {recorded} from " in refusal and f"got {sha256sum(weights)})" in refusal
    assert "metadata.json (weights.sha256)" in refusal and "get the original file again" in refusal
    assert not (tmp_path / "eval_tampered" / "predictions.csv").exists()


def test_sha256_recorded_in_large_files_is_checked_at_load(tmp_path):
    import yaml

    from medzoo.weights import ChecksumError, recorded_sha256

    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text("{}")
    weights = save_weights({"w": torch.ones(3)}, bundle / "models" / "extra.safetensors")
    assert recorded_sha256(weights) is None and load_state_dict(weights).keys() == {"w"}  # no record: no check
    (bundle / "large_files.yml").write_text(
        yaml.safe_dump(
            {
                "large_files": [
                    {
                        "path": "models/extra.safetensors",
                        "url": "https://example.invalid/x",
                        "hash_type": "sha256",
                        "hash_val": "ab" * 32,
                    }
                ]
            }
        )
    )
    assert recorded_sha256(weights)[0] == "ab" * 32
    with pytest.raises(
        ChecksumError, match=rf"extra.safetensors: sha256 mismatch \(expected {'ab' * 32} from .*large_files.yml"
    ):
        load_state_dict(weights)
    (bundle / "large_files.yml").write_text(
        (bundle / "large_files.yml").read_text().replace("ab" * 32, sha256sum(weights))
    )
    assert torch.equal(load_state_dict(weights)["w"], torch.ones(3))
    with pytest.raises(ChecksumError, match="the expected digest passed to load_weights"):
        load_state_dict(weights, sha256="0" * 64)


# ----------------------------------------------------------------------------------------------------- downloads


def test_verify_sha256_deletes_a_mismatching_file(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"released weights")
    assert verify_sha256(path, sha256sum(path).upper()) == path
    with pytest.raises(
        ChecksumError, match=r"weights.pt: sha256 mismatch \(expected 0{64}, got [0-9a-f]{64}\); the file was deleted"
    ):
        verify_sha256(path, "0" * 64)
    assert not path.exists()
    path.write_bytes(b"again")
    with pytest.raises(ValueError, match="is not 64 hex digits"):
        verify_sha256(path, "abc")
    with pytest.raises(FileNotFoundError, match="missing.pt: file not found"):
        verify_sha256(tmp_path / "missing.pt", "0" * 64)


def test_fetch_keeps_only_a_verified_download(tmp_path):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"x" * 1000)
    digest = sha256sum(source)
    target = tmp_path / "cache" / "model.bin"
    assert fetch(source.as_uri(), target, digest).read_bytes() == b"x" * 1000
    source.write_bytes(b"tampered")
    target.unlink()
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        fetch(source.as_uri(), target, digest)
    assert list((tmp_path / "cache").iterdir()) == []  # neither the file nor a temporary copy is kept


def test_fetch_large_files_checks_every_entry(tmp_path, cxr_bundle):
    import shutil

    import yaml

    from medzoo.downloads import fetch_large_files

    bundle = tmp_path / "bundle"
    shutil.copytree(cxr_bundle.root / "configs", bundle / "configs")
    remote = tmp_path / "remote.pt"
    remote.write_bytes(b"weights")
    entry = {"path": "models/model.pt", "url": remote.as_uri(), "hash_type": "sha256", "hash_val": sha256sum(remote)}

    def write(entries):
        (bundle / "large_files.yml").write_text(yaml.safe_dump({"large_files": entries}))

    write([entry])
    assert fetch_large_files(bundle) == [bundle / "models" / "model.pt"]
    (bundle / "models" / "model.pt").unlink()
    write([{**entry, "hash_val": "f" * 64}])
    with pytest.raises(ChecksumError):
        fetch_large_files(bundle)
    assert not (bundle / "models" / "model.pt").exists()
    write([{**entry, "path": "../../outside.pt"}])
    with pytest.raises(ValueError, match="leaves the bundle folder"):
        fetch_large_files(bundle)
    write([{**entry, "hash_type": "md5"}])
    with pytest.raises(ValueError, match="needs hash_type sha256"):
        fetch_large_files(bundle)


# ------------------------------------------------------------------------------------------------------ archives


def _zip(path: Path, entries: list[tuple[str, bytes]], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, target in (symlinks or {}).items():  # links first, so later entries can go through them
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
        for name, data in entries:
            z.writestr(name, data)
    return path


def test_safe_extract_extracts_a_normal_zip(tmp_path):
    archive = _zip(
        tmp_path / "bundle.zip",
        [("b/configs/metadata.json", b"{}"), ("b/models/README.md", b"x")],
        symlinks={"b/docs/link.md": "../models/README.md"},
    )
    out = tmp_path / "out"
    assert safe_extract(archive, out) == out
    assert (out / "b" / "configs" / "metadata.json").read_bytes() == b"{}"
    assert (out / "b" / "docs" / "link.md").is_symlink() and (out / "b" / "docs" / "link.md").read_text() == "x"
    assert (out / "b" / "models" / "README.md").read_bytes() == b"x"
    assert sorted(p.name for p in out.iterdir()) == ["b"]  # no staging folder left
    with pytest.raises(FileExistsError, match="b already exists; extract into an empty folder"):
        safe_extract(archive, out)


@pytest.mark.parametrize(
    "entries, symlinks, problem",
    [
        ([("/etc/evil", b"x")], None, "absolute path"),
        ([("ok.txt", b"x"), ("../evil", b"x")], None, "'..' component"),
        ([("a/../../evil", b"x")], None, "'..' component"),
        ([("ok.txt", b"x")], {"link": "/etc/passwd"}, "escapes the target folder"),
        ([("ok.txt", b"x")], {"a/link": "../../outside"}, "escapes the target folder"),
        ([("C:/evil", b"x")], None, "absolute path"),
        # each link is lexically inside, but "c" physically resolves to the target's parent through "a/up"
        ([("c/evil", b"x")], {"a/up": "..", "c": "a/up/.."}, "through links it resolves outside the target folder"),
        ([("b\\..\\..\\evil", b"x")], None, "'..' component"),
        ([("ok.txt", b"x")], {"b/a": ".", "b/c": "a/../../.."}, "escapes the target folder"),
        ([("ok.txt", b"x"), (".", b"x")], None, "empty name"),
    ],
)
@pytest.mark.parametrize("existing", [False, True])
def test_safe_extract_refuses_zip_slip_and_extracts_nothing(tmp_path, entries, symlinks, problem, existing):
    """A refused archive leaves the target as it was: still empty if it existed, not created if it did not."""
    archive = _zip(tmp_path / "evil.zip", entries, symlinks)
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    with pytest.raises(
        UnsafeArchiveError, match=f"evil.zip: refusing to extract member .*{re.escape(problem)}; nothing was extracted"
    ):
        safe_extract(archive, out)
    assert (list(out.iterdir()) == []) if existing else not out.exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_safe_extract_tar_refuses_escapes_and_special_files(tmp_path):
    def tar(name: str, members: list[tarfile.TarInfo]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w") as t:
            for m in members:
                t.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
        return path

    good = tarfile.TarInfo("dir/file.txt")
    good.size = 1
    assert (safe_extract(tar("good.tar", [good]), tmp_path / "good") / "dir" / "file.txt").read_text() == "x"
    link = tarfile.TarInfo("dir/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
    hard = tarfile.TarInfo("dir/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
    fifo = tarfile.TarInfo("dir/fifo")
    fifo.type = tarfile.FIFOTYPE
    for name, member, problem in [("l.tar", link, "escapes"), ("h.tar", hard, "hardlink"), ("f.tar", fifo, "special")]:
        with pytest.raises(UnsafeArchiveError, match=problem):
            safe_extract(tar(name, [good, member]), tmp_path / name.replace(".", "_"))
        assert not (tmp_path / name.replace(".", "_")).exists()
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="not a zip or tar archive"):
        safe_extract(tmp_path / "notes.txt", tmp_path / "x")


def _ordinary_zip(path: Path) -> Path:
    """Entries as ordinary tools write them, none with a Unix file type: zipfile.writestr with a plain name (permission
    bits 0o600 only), create_system 0 with external_attr 0, DOS 'archive' and 'directory' attributes."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("b/configs/metadata.json", "{}")
        for name, attributes in [("b/models/README.md", 0), ("b/docs/card.md", 0x20), ("b/empty/", 0x10)]:
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 0, attributes
            z.writestr(info, "" if name.endswith("/") else name)
    modes = [(i.create_system, i.external_attr >> 16) for i in zipfile.ZipFile(path).infolist()]
    assert modes[0][1] == 0o600 and all(stat.S_IFMT(mode) == 0 for _, mode in modes)
    return path


def test_safe_extract_accepts_zip_entries_without_unix_file_types(tmp_path):
    safe_extract(_ordinary_zip(tmp_path / "plain.zip"), tmp_path / "out")
    assert (tmp_path / "out" / "b" / "configs" / "metadata.json").read_text() == "{}"
    assert (tmp_path / "out" / "b" / "docs" / "card.md").read_text() == "b/docs/card.md"
    assert (tmp_path / "out" / "b" / "models" / "README.md").is_file() and (tmp_path / "out" / "b" / "empty").is_dir()


def _typed_zip(path: Path, name: str, file_type: int, content: str = "x") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("b/ok.txt", "ok")
        info = zipfile.ZipInfo(name)
        info.create_system, info.external_attr = 3, (file_type | 0o644) << 16
        z.writestr(info, content)
    return path


@pytest.mark.parametrize(
    "name, file_type, content, problem",
    [
        ("b/link", stat.S_IFLNK, "../../outside", "escapes the target folder"),
        ("b/link", stat.S_IFLNK, "/etc/passwd", "escapes the target folder"),
        ("b/char_device", stat.S_IFCHR, "", "special"),
        ("b/block_device", stat.S_IFBLK, "", "special"),
        ("b/fifo", stat.S_IFIFO, "", "special"),
        ("/tmp/evil", 0, "x", "absolute path"),
        ("b/../../evil", 0, "x", "'..' component"),
    ],
)
def test_safe_extract_still_refuses_links_devices_absolute_and_parent_paths(
    tmp_path, name, file_type, content, problem
):
    archive = _typed_zip(tmp_path / "evil.zip", name, file_type, content)
    out = tmp_path / "out" / "dest"
    with pytest.raises(UnsafeArchiveError, match=problem):
        safe_extract(archive, out)
    assert not out.exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "evil").exists()


# ------------------------------------------------------------------------------------------------- config review


CRAFTED = {
    "imports": ["$import os", "$import monai"],
    "device": "$torch.device('cpu')",
    "cleanup": "$os.system('rm -rf ~')",
    "shell": {"_target_": "subprocess.Popen", "args": ["curl", "http://example.invalid"]},
    "network_def": {"_target_": "DenseNet121", "spatial_dims": 2, "in_channels": 1, "out_channels": 2},
    "sizes": "$[s * 2 for s in @spatial_size]",
    "sneaky": "$monai.utils.optional_import('subprocess')[0]",
    "escape": "$().__class__.__base__.__subclasses__()",
    "reader": "$open('/etc/passwd').read()",
    "trainer": {"_target_": "ignite.handlers.ProgressBar"},
}


def test_review_lists_code_reaching_outside_the_trusted_packages():
    items = {i.id: i for i in review_config(CRAFTED, "crafted.json")}
    assert set(items) == {"imports#0", "cleanup", "shell#_target_", "sneaky", "escape", "reader"}
    assert items["imports#0"].kind == "import" and "imports os" in items["imports#0"].reason
    assert "uses os" in items["cleanup"].reason and ".system" in items["cleanup"].reason
    assert items["shell#_target_"].kind == "_target_" and items["shell#_target_"].text == "subprocess.Popen"
    assert "optional_import" in items["sneaky"].reason
    assert "__subclasses__" in items["escape"].reason
    assert "open (builtin)" in items["reader"].reason
    assert str(items["cleanup"]).startswith("crafted.json:cleanup: expression")


def test_review_a_bundle_folder_without_running_it(tmp_path, capsys, cxr_bundle):
    import shutil

    import fire

    copy = tmp_path / "downloaded_bundle"
    shutil.copytree(cxr_bundle.root / "configs", copy / "configs")
    (copy / "configs" / "evil.json").write_text(json.dumps(CRAFTED))
    (copy / "scripts").mkdir()
    (copy / "scripts" / "hook.py").write_text("import os\n")
    fire.Fire(ZooCLI, command=["review", str(copy)], name="medzoo")
    out = capsys.readouterr().out
    assert "configs/evil.json:cleanup: expression \"$os.system('rm -rf ~')\"" in out
    assert "configs/evil.json:shell#_target_: _target_ 'subprocess.Popen'" in out
    assert "scripts/hook.py" in out
    assert "configs/train.json:network_def" not in out  # MONAI's own classes are not listed


@pytest.mark.parametrize("name", bundle_names())
def test_review_of_every_bundle_runs(name):
    """The listing exists for every bundle; items are not failures but each must name a file, id and reason."""
    for item in review_bundle_configs(Bundle(name).root):
        assert item.file and item.id and item.reason


def test_a_text_file_named_png_is_named_in_the_error(tmp_path):
    from medzoo.cxr.transforms import ImageReadError, read_xray

    fake = tmp_path / "scan.png"
    fake.write_text("patient notes, not an image\n")
    with pytest.raises(ImageReadError) as raised:
        read_xray(fake)
    message = str(raised.value)
    assert message.startswith(f"{fake}: not a readable image") and "b'patient notes, n'" in message
    assert "BytesIO" not in message and "0x" not in message


#: (config entry, runs here: creates MARKER through MONAI's ConfigParser). MARKER is replaced by a file in tmp_path.
BYPASSES = {
    "launcher_through_module_attributes": (
        {"_target_": "torch.utils.cpp_extension.subprocess.check_call", "args": ["touch", "MARKER"]},
        True,
    ),
    "launcher_in_an_expression": ("$torch.utils.cpp_extension.subprocess.check_call(['touch', 'MARKER'])", True),
    "os_through_torch": ("$torch.os.system('touch MARKER')", True),
    "instantiate_helper": ("$monai.utils.instantiate('os.system', 'default', command='touch MARKER')", True),
    "instantiate_target": ({"_target_": "monai.utils.instantiate", "_mode_": "callable"}, False),
    "optional_import_target": ({"_target_": "monai.utils.optional_import", "module": "os"}, False),
    "pydoc_locate_reexported": ({"_target_": "monai.utils.module.locate", "path": "os.system"}, False),
    "bare_builtin_target": ({"_target_": "open", "file": "MARKER", "mode": "w"}, True),
    "getattr_on_strings": ("$getattr(__import__('o' + 's'), 'sys' + 'tem')('touch MARKER')", True),
    "builtins_dict": ("$__builtins__['__import__']('os').system('touch MARKER')", True),
    "importlib": ("$__import__('importlib').import_module('os').system('touch MARKER')", True),
    "nested_config_parser": ({"_target_": "monai.bundle.ConfigParser", "config": {}}, False),
    "torch_hub_load": ({"_target_": "torch.hub.load", "repo_or_dir": "x/y", "model": "m"}, False),
    "torch_load_target": ({"_target_": "torch.load", "f": "model.pt", "weights_only": False}, False),
    "numpy_load_allow_pickle": ("$numpy.load('data.npy', allow_pickle=True)", False),
}


@pytest.mark.parametrize("name", BYPASSES)
def test_review_lists_config_code_that_runs_through_monai(tmp_path, monkeypatch, name):
    from monai.bundle import ConfigParser

    entry, runs_here = BYPASSES[name]
    marker = tmp_path / "MARKER_written"
    entry = json.loads(json.dumps(entry).replace("MARKER", str(marker)))
    config = {"imports": ["$import torch", "$import numpy"], "payload": entry}
    assert [i.id.split("#")[0] for i in review_config(config, "c.json")] == ["payload"], review_config(config, "c.json")
    if runs_here:
        monkeypatch.chdir(tmp_path)
        ConfigParser(config).get_parsed_content("payload")
        assert marker.exists()  # the entry really runs code when the config is parsed


def test_review_expands_macros_from_other_files_of_the_bundle(tmp_path, monkeypatch):
    from monai.bundle import ConfigParser

    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "docs").mkdir()
    marker = tmp_path / "macro_ran"
    (bundle / "configs" / "metadata.json").write_text("{}")
    (bundle / "docs" / "notes.json").write_text(json.dumps({"cmd": f"$__import__('os').system('touch {marker}')"}))
    config = {"imports": ["$import torch"], "setup": "%docs/notes.json#cmd", "outside": "%/etc/medzoo_nowhere.json#x"}
    (bundle / "configs" / "inference.json").write_text(json.dumps({k: v for k, v in config.items() if k != "outside"}))
    (bundle / "configs" / "other.json").write_text(json.dumps({"outside": config["outside"]}))
    monkeypatch.chdir(bundle)  # the README's way: python -m monai.bundle run from the bundle folder
    parser = ConfigParser()
    parser.read_config("configs/inference.json")
    parser.get_parsed_content("setup")
    assert marker.exists()
    items = {(i.file, i.id): i for i in review_bundle_configs(bundle)}
    assert "uses __import__ (builtin)" in items[("configs/inference.json", "setup")].reason
    assert items[("configs/other.json", "outside")].reason == "pulls config content from a file outside the bundle"
