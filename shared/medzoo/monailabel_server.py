"""ASGI entry point of the server ``medzoo monailabel start`` runs: MONAI Label's app behind an origin check.

Runs inside the MONAI Label environment: ``medzoo monailabel setup`` copies this file into the app folder as
``medzoo_server.py`` (it needs only the standard library, and monailabel once the server starts). monailabel 0.8.5
answers every web origin (CORS ``*``), so any web page open in a browser on the machine could read what a server on
127.0.0.1 holds, and its own setting to restrict that (``MONAI_LABEL_CORS_ORIGINS``) makes ``start_server`` fail (it
cannot serialise the parsed URLs). Here, before MONAI Label sees a request:

- a request whose ``Origin`` header is not in ``MEDZOO_MONAILABEL_ORIGINS`` (JSON list of ``scheme://host:port``) is
  refused with 403, so a page from another site can neither read answers nor save labels;
- when ``MEDZOO_MONAILABEL_HOSTS`` (JSON list of host names) is not empty, a request whose ``Host`` header names
  another host is refused with 403 (a page whose domain was made to resolve to 127.0.0.1 sends its own name).

Requests without an ``Origin`` header (3D Slicer, curl, scripts, the server's own pages loading data) pass unchanged.
"""

import json
import os

#: What the server admits, from the environment ``medzoo monailabel start`` sets.
ALLOWED_ORIGINS = frozenset(json.loads(os.environ.get("MEDZOO_MONAILABEL_ORIGINS", "[]")))
ALLOWED_HOSTS = frozenset(json.loads(os.environ.get("MEDZOO_MONAILABEL_HOSTS", "[]")))


def _host_name(host: str) -> str:
    """``127.0.0.1:8000`` -> ``127.0.0.1``, ``[::1]:8000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def refusal(headers: dict[str, str], origins=ALLOWED_ORIGINS, hosts=ALLOWED_HOSTS) -> str | None:
    """Why a request with these (lower-cased) headers is refused, or ``None`` when it may reach MONAI Label."""
    origin = headers.get("origin")
    if origin is not None and origin not in origins:
        return f"origin {origin} is not allowed (medzoo monailabel start --origins ...)"
    if hosts and _host_name(headers.get("host", "")) not in hosts:
        return f"host {headers.get('host', '')} is not served here"
    return None


async def app(scope, receive, send):
    """MONAI Label's ASGI app, refusing with 403 what :func:`refusal` names."""
    from monailabel.app import app as monailabel_app  # at the first (lifespan) call: only MONAI Label's env has it

    if scope["type"] == "http":
        reason = refusal({k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]})
        if reason is not None:
            body = reason.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
    await monailabel_app(scope, receive, send)
