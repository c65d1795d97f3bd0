"""MONAI Label serving the zoo's bundles: its own environment, an app folder, a server on 127.0.0.1.

The two commands the docs show and ``tests/test_monailabel.py`` runs (:data:`SETUP_COMMAND`, :data:`START_COMMAND`)::

    medzoo monailabel setup <bundle> [<bundle> ...] --env monailabel-env --app monailabel-app
    medzoo monailabel start --env monailabel-env --app monailabel-app --studies /path/to/studies --port 8000

``setup`` creates (or brings up to date) a virtual environment holding :func:`requirements`: monailabel 0.8.5 with
the pins it needs (it forces numpy<2, so it cannot share the zoo's numpy-2 environment), the torch and torchvision
versions of the environment running medzoo, and every package the bundles' metadata list. It then copies the
``monaibundle`` sample app shipped in the monailabel wheel to the app folder and places what each bundle's package
holds (bundle files plus the vendored shared layer, :func:`medzoo.package.package_files`) in its ``model/`` folder.

``start`` replaces itself with MONAI Label's ``start_server`` serving every bundle of the app folder offline
(:data:`OFFLINE_CONF`), bound to ``--host`` (default 127.0.0.1, this machine only), through
:mod:`medzoo.monailabel_server`, which refuses requests from web pages of other origins (MONAI Label's own CORS
setting allows every origin, and restricting it makes monailabel 0.8.5 fail at start). MONAI Label has no
authentication unless configured: ``--host 0.0.0.0`` lets anyone who reaches the port read the studies, save labels
and run inference or training.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import venv
from importlib.metadata import version
from pathlib import Path

from .errors import UserError
from .package import package_files
from .zoo import Bundle

__all__ = [
    "DOCUMENTED",
    "MONAILABEL_PINS",
    "OFFLINE_CONF",
    "SERVER_MODULE",
    "SETUP_COMMAND",
    "START_COMMAND",
    "MonaiLabelCommands",
    "admitted",
    "command",
    "documented_commands",
    "monailabel_task",
    "install",
    "requirements",
    "served_bundles",
    "setup",
    "start_argv",
]

#: monailabel and the versions of its dependencies it needs to import (its own pins are looser than what works).
MONAILABEL_PINS = ("monailabel==0.8.5", "pydicom<3", "pynetdicom<3", "dicomweb-client[gcp]<0.60")
#: ``--conf`` settings of the monaibundle app that keep it offline: bundles from its ``model/`` folder (any source
#: but the default hosting one), no SAM2 model download.
OFFLINE_CONF = ("--conf", "zoo_source", "local", "--conf", "sam2", "false")
#: The commands, as the docs show them and the test runs them (``str.format`` fields; values are shell-quoted).
SETUP_COMMAND = "medzoo monailabel setup {bundles} --env {env} --app {app}"
START_COMMAND = "medzoo monailabel start --env {env} --app {app} --studies {studies} --port {port}"
#: The values the docs use for the fields of :data:`SETUP_COMMAND` and :data:`START_COMMAND` (all but ``bundles``).
DOCUMENTED = {"env": "monailabel-env", "app": "monailabel-app", "studies": "/path/to/studies", "port": 8000}
#: The ASGI module ``start`` serves (a copy of :mod:`medzoo.monailabel_server` that ``setup`` puts in the app folder).
SERVER_MODULE = "medzoo_server"
#: Weight files the monaibundle app loads from ``models/`` (PyTorch state dict first, else TorchScript).
WEIGHT_FILES = ("model.pt", "model.ts")
_VENDORED = "medzoo"


def command(template: str, **fields) -> str:
    """``template`` with its fields shell-quoted (``bundles`` may be a list: one argument each)."""
    quoted = {
        k: " ".join(map(shlex.quote, map(str, v))) if isinstance(v, (list, tuple)) else shlex.quote(str(v))
        for k, v in fields.items()
    }
    return template.format(**quoted)


def documented_commands(bundle: str) -> tuple[str, str]:
    """The ``setup`` and ``start`` lines a bundle's docs show, with the :data:`DOCUMENTED` values."""
    return command(SETUP_COMMAND, bundles=[bundle], **DOCUMENTED), command(START_COMMAND, **DOCUMENTED)


def _setup_hint(env: str, app: str) -> str:
    return SETUP_COMMAND.format(bundles="<bundle> [<bundle> ...]", env=shlex.quote(str(env)), app=shlex.quote(str(app)))


def _canonical(requirement: str) -> str:
    """The normalised project name of a requirement (``dicomweb-client[gcp]<0.60`` -> ``dicomweb-client``)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()


def requirements(bundles: list[Bundle]) -> list[str]:
    """What the MONAI Label environment needs to serve ``bundles``.

    :data:`MONAILABEL_PINS`, ``torch``/``torchvision`` at the versions installed beside medzoo, then, by name, every
    package the bundles' metadata list (``required_packages_version`` or its older name ``optional_packages_version``)
    except the vendored ``medzoo`` and the packages pinned before (monailabel's pins win over the versions a bundle
    was tested with, e.g. ``pydicom<3`` over pydicom 3).
    """
    pinned = [*MONAILABEL_PINS, *(f"{p}=={version(p).split('+')[0]}" for p in ("torch", "torchvision"))]
    taken = {_canonical(p) for p in pinned} | {_VENDORED}
    listed = {
        _canonical(name)
        for b in bundles
        for key in ("required_packages_version", "optional_packages_version")
        for name in b.metadata.get(key) or {}
    }
    return [*pinned, *sorted(listed - taken)]


def monailabel_task(bundle: Bundle) -> str | None:
    """``"segmentation"`` or ``"classification"`` when the metadata ``task`` says so (the bundles MONAI Label serves)."""
    task = bundle.metadata["task"].lower()
    return next((w for w in ("segmentation", "classification") if w in task), None)


def _check_servable(bundle: Bundle) -> None:
    if bundle.metadata.get("monailabel_unsupported"):
        raise UserError(
            f"{bundle.name}: MONAI Label cannot serve it ({bundle.metadata['monailabel_unsupported']}); "
            "see the MONAI Label section of its docs/README.md"
        )
    if monailabel_task(bundle) is None:
        raise UserError(
            f"{bundle.name}: task '{bundle.metadata.get('task')}' is neither segmentation nor "
            "classification, the two kinds of bundle the monaibundle app serves"
        )


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def install(env: Path, packages: list[str]) -> None:
    """Create the virtual environment ``env`` if missing and ``pip install`` ``packages`` into it.

    An environment this call created is removed again if the install fails.
    """
    created = not _python(env).exists()
    if created:
        if env.exists() and any(env.iterdir()):
            raise UserError(f"--env {env}: folder exists and is not a virtual environment; choose another folder")
        print(f"creating the MONAI Label environment {env}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env)
    print(f"installing into {env} (minutes when new): {' '.join(packages)}", flush=True)
    result = subprocess.run([str(_python(env)), "-m", "pip", "install", "--quiet", *packages], check=False)
    if result.returncode != 0:
        if created:
            shutil.rmtree(env, ignore_errors=True)
        raise UserError(
            f"pip could not install the MONAI Label environment {env} (exit {result.returncode}); "
            "its output above says which package failed"
        )


def setup(bundles: list[str], env: str, app: str) -> Path:
    """Install the MONAI Label environment ``env`` for ``bundles`` (names or folders) and build the app folder ``app``.

    ``app`` must not exist yet; it is written next to its final place and moved there when complete. A bundle without
    ``models/model.pt`` (or ``model.ts``) is placed all the same, with a note: MONAI Label skips it until weights
    are put there. Returns the app folder.
    """
    if not bundles:
        raise UserError(f"name at least one bundle: {_setup_hint(env, app)}")
    resolved = [Bundle(b) for b in bundles]
    for bundle in resolved:
        _check_servable(bundle)
    names = [b.name for b in resolved]
    if len(set(names)) < len(names):
        raise UserError(
            f"bundles named twice: {sorted({n for n in names if names.count(n) > 1})}; the app holds one "
            "folder per bundle name"
        )
    env_path, app_path = Path(env).absolute(), Path(app).absolute()
    if app_path.exists():
        raise UserError(f"--app {app}: folder exists; remove it or choose another (setup writes a new app folder)")
    install(env_path, requirements(resolved))
    shipped = env_path / "monailabel" / "sample-apps" / "monaibundle"
    if not shipped.is_dir():
        raise UserError(f"{shipped} is missing: the installed monailabel does not ship the monaibundle sample app")
    app_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=app_path.parent, prefix=f".{app_path.name}.") as scratch:
        draft = Path(shutil.copytree(shipped, Path(scratch) / "app", ignore=shutil.ignore_patterns("__pycache__")))
        for bundle in resolved:  # what the package holds, copied rather than zipped and unzipped (weights are large)
            for name_in_package, source in package_files(bundle):
                target = draft / "model" / name_in_package
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        shutil.copyfile(Path(__file__).with_name("monailabel_server.py"), draft / f"{SERVER_MODULE}.py")
        os.replace(draft, app_path)
    for bundle in resolved:
        if not any((app_path / "model" / bundle.name / "models" / w).is_file() for w in WEIGHT_FILES):
            print(
                f"note: {bundle.name} has no models/model.pt; put its weights at "
                f"{app_path / 'model' / bundle.name / 'models' / 'model.pt'} before starting the server"
            )
    print(
        f"MONAI Label app with {', '.join(b.name for b in resolved)} written to {app_path}; start it with\n  "
        + command(START_COMMAND, env=env, app=app, studies=DOCUMENTED["studies"], port=DOCUMENTED["port"])
    )
    return app_path


def served_bundles(app: Path) -> list[str]:
    """Names of the bundle folders in ``app/model``, sorted."""
    model_dir = app / "model"
    return (
        sorted(p.name for p in model_dir.iterdir() if (p / "configs" / "metadata.json").is_file())
        if model_dir.is_dir()
        else []
    )


def admitted(host: str, port: int, origins: list[str] = ()) -> tuple[list[str], list[str]]:
    """The web origins and ``Host`` names a server bound to ``host:port`` admits (see :mod:`medzoo.monailabel_server`).

    Bound to a loopback address: its own addresses (127.0.0.1, localhost, [::1]) at ``port``, and only those host
    names. Bound elsewhere: ``http://<host>:<port>`` unless ``host`` is a wildcard (0.0.0.0, ::), any host name.
    ``origins`` are added in both cases (e.g. the address a web viewer is opened at when the server is exposed).
    """
    try:
        address = ipaddress.ip_address(host)
        loopback, wildcard = address.is_loopback, address.is_unspecified
    except ValueError:
        loopback, wildcard = host == "localhost", False
    if loopback:
        hosts = ["127.0.0.1", "localhost", "::1"]
        own = [f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")]
    else:
        hosts = []
        own = [] if wildcard else [f"http://{f'[{host}]' if ':' in host else host}:{port}"]
    return [*own, *origins], hosts


def start_argv(
    env: str, app: str, studies: str, host: str = "127.0.0.1", port: int = 8000, origins: list[str] = ()
) -> tuple[list[str], dict]:
    """The ``python -m monailabel.main start_server`` command line and environment :func:`start` runs, after checking
    its inputs.

    The server runs :data:`SERVER_MODULE` (MONAI Label behind the origin check of :func:`admitted`), with this
    process's environment minus ``PYTHONPATH``/``PYTHONHOME``: it imports only its own environment, the app folder and
    the bundles' vendored shared layer.
    """
    env_path, app_path, studies_path = Path(env).absolute(), Path(app).absolute(), Path(studies).absolute()
    if not (env_path / "monailabel" / "sample-apps").is_dir() or not _python(env_path).is_file():
        raise UserError(f"--env {env}: no MONAI Label environment there; create it with " + _setup_hint(env, app))
    names = served_bundles(app_path)
    if not names or not (app_path / f"{SERVER_MODULE}.py").is_file():
        raise UserError(f"--app {app}: not an app folder built by setup; build it with " + _setup_hint(env, app))
    unweighted = [n for n in names if not any((app_path / "model" / n / "models" / w).is_file() for w in WEIGHT_FILES)]
    if unweighted:
        raise UserError(
            f"no weights for {', '.join(unweighted)}: put them at "
            f"{app_path / 'model' / '<bundle>' / 'models' / 'model.pt'} (MONAI Label would skip them)"
        )
    if not studies_path.is_dir():
        raise UserError(f"--studies {studies}: no such folder (MONAI Label would serve an empty one)")
    allowed_origins, allowed_hosts = admitted(host, port, origins)
    if not allowed_hosts:
        print(
            f"warning: binding {host}: MONAI Label has no authentication by default, so anyone who can reach port "
            f"{port} can read the studies, save labels and run inference or training",
            file=sys.stderr,
            flush=True,
        )
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    environ.update(
        PYTHONPATH=str(app_path),
        MEDZOO_MONAILABEL_ORIGINS=json.dumps(allowed_origins),
        MEDZOO_MONAILABEL_HOSTS=json.dumps(allowed_hosts),
    )
    argv = [
        str(_python(env_path)),
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(app_path),
        "--studies",
        str(studies_path),
        "--conf",
        "models",
        ",".join(names),
        *OFFLINE_CONF,
        "--host",
        host,
        "--port",
        str(port),
        "--uvicorn_app",
        f"{SERVER_MODULE}:app",
    ]
    return argv, environ


class MonaiLabelCommands:
    """MONAI Label with the zoo's bundles: ``setup`` (environment and app folder), then ``start`` (the server)."""

    def setup(self, *bundles: str, env: str = DOCUMENTED["env"], app: str = DOCUMENTED["app"]) -> None:
        """Install MONAI Label 0.8.5 into its own environment ``--env`` and build the app folder ``--app`` serving the
        named bundles (names or folders; each is packaged from its folder, with its ``models/model.pt`` if present)."""
        setup(list(bundles), env, app)

    def start(
        self,
        studies: str,
        env: str = DOCUMENTED["env"],
        app: str = DOCUMENTED["app"],
        host: str = "127.0.0.1",
        port: int = 8000,
        origins: str = "",
    ) -> None:
        """Run the MONAI Label server (foreground) on the app's bundles and the images in ``--studies``.

        Bound to 127.0.0.1 unless ``--host`` says otherwise (``--host 0.0.0.0``: every interface, and anyone who
        reaches the port can use the server, which has no authentication). Requests from web pages of other origins
        are refused; ``--origins http://name:8000,...`` admits more (e.g. where a web viewer is opened).
        """
        listed = origins if isinstance(origins, (list, tuple)) else str(origins).split(",")  # fire may parse a list
        argv, environ = start_argv(env, app, studies, host, port, [o for o in listed if o])
        print(" ".join(map(shlex.quote, argv)), flush=True)
        os.execve(argv[0], argv, environ)
