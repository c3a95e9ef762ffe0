"""`pdc view`: a read-only browser over a run and its harvest (docs/view.md). `serve` runs the
app on uvicorn, bound to loopback unless told otherwise."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from pdc.analyze.view.app import LOOPBACK_NAMES, make_app
from pdc.analyze.view.data import Viewer, ViewError, open_viewer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def is_loopback(host: str) -> bool:
    """`localhost` and loopback addresses (127.0.0.0/8, ::1) are private to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_config(app: object, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> "object":
    """The uvicorn config `serve` runs (tests read its host): no access log on stdout, no
    proxy headers trusted, no reload, one worker, and the process's logging left as it is
    (`log_config=None`: uvicorn's own dictConfig would close every existing handler — a
    notebook's, or a test runner's capture)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None,
                          proxy_headers=False, server_header=False, lifespan="off")


def serve(run_dir: str | Path, harvest_dir: str | Path | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT) -> None:
    """Serve until Ctrl-C; prints the URL (and a warning when the host is not loopback)."""
    import uvicorn

    viewer = open_viewer(run_dir, harvest_dir)
    if viewer.harvest is not None:
        print(f"pdc view: harvest {viewer.harvest.path}", file=sys.stderr)
    if not is_loopback(host):
        print(f"pdc view: warning: serving on {host}, reachable from other machines; the viewer has no "
              "authentication (the default is 127.0.0.1)", file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"pdc view: http://{shown}:{port}/  (Ctrl-C stops it)", flush=True)
    # On loopback, answer only to loopback names (no DNS rebinding); elsewhere the user chose the exposure.
    hosts = (*LOOPBACK_NAMES, shown.lower()) if is_loopback(host) else None
    uvicorn.Server(server_config(make_app(viewer, hosts), host, port)).run()  # type: ignore[arg-type]


__all__ = ["serve", "make_app", "open_viewer", "Viewer", "ViewError", "is_loopback", "server_config",
           "DEFAULT_HOST", "DEFAULT_PORT"]
