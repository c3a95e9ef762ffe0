"""The `pdc view` ASGI app (Starlette): HTML pages and the JSON API under /api over a `Viewer`.

Safe by default: only GET for pages and reads, POST only for the two live computations (which
write nothing); path parameters validated (an unknown site or component, `..`, an encoded
traversal all answer 404); request bodies capped at `MAX_BODY` bytes (413) and texts at
`MAX_TEXT` characters; every error, including an unexpected one, is a JSON body
`{"error", "status"}` — never a traceback page.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pdc.analyze.view import pages
from pdc.analyze.view.data import Viewer, ViewError, parse_component

MAX_BODY = 64 * 1024
STATIC = Path(__file__).with_name("static")
LOG = logging.getLogger("pdc.view")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _handler(fn: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint whose work runs in a worker thread (DuckDB, JAX block) and whose
    `ViewError`s become JSON errors."""
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        try:
            result = await run_in_threadpool(fn, request)
        except ViewError as problem:
            return error(problem.status, problem.message)
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object of a POST body, at most MAX_BODY bytes (413), valid JSON object (422)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise ViewError(413, f"request body over {MAX_BODY} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ViewError(413, f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise ViewError(422, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ViewError(422, "the body must be a JSON object")
    return body


def _live(method: Callable[[Viewer, dict[str, Any]], dict[str, Any]], viewer: Viewer) -> Callable[[Request], Any]:
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        try:
            body = await _body(request)
            return JSONResponse(await run_in_threadpool(method, viewer, body))
        except ViewError as problem:
            return error(problem.status, problem.message)

    return endpoint


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ViewError(422, f"`{name}` must be an integer, not {raw!r}") from None


def _site_args(request: Request) -> dict[str, Any]:
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ViewError(422, "`order` is asc or desc")
    return {"sort": request.query_params.get("sort", "density"), "descending": order == "desc",
            "offset": _int(request, "offset", 0), "limit": _int(request, "limit", 50)}


class HostCheck:
    """Answer only requests whose Host header names one of `hosts` (any port): a server bound
    to loopback then cannot be reached through a DNS name rebound to 127.0.0.1 by a web page
    (a browser sends that name as Host). Others get a JSON 400."""

    def __init__(self, app: Any, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            name = raw.rsplit(":", 1)[0] if not raw.endswith("]") else raw
            if name not in self.hosts:
                await error(400, f"this server answers to {', '.join(sorted(self.hosts))} only (Host {raw!r})")(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def make_app(viewer: Viewer, hosts: Sequence[str] | None = None) -> Starlette:
    """The app over `viewer`; `viewer.live` may be preloaded (tests), else the first probe loads
    it. With `hosts`, only requests naming one of them in their Host header are answered."""
    v = viewer

    def api_run(request: Request) -> Any:
        return v.run_info()

    def api_sites(request: Request) -> Any:
        return {"sites": v.site_summary(), "harvest": v.harvest is not None}

    def api_components(request: Request) -> Any:
        return v.site_page(request.path_params["site"], **_site_args(request))

    def api_component(request: Request) -> Any:
        return v.component_page(request.path_params["site"], parse_component(request.path_params["component"]))

    def api_search(request: Request) -> Any:
        return v.search(request.query_params.get("q", ""), _int(request, "limit", 50))

    def healthz(request: Request) -> Any:
        return {"ok": True, "run": str(v.run_dir), "harvest": v.harvest is not None}

    def page_run(request: Request) -> Any:
        return HTMLResponse(pages.run_page(v.run_info()))

    def page_site(request: Request) -> Any:
        site = request.path_params["site"]
        if v.harvest is None:
            v.check_site(site)
            return HTMLResponse(pages.layout(site, f"<h1>{pages.e(site)}</h1>{pages.no_harvest()}", False))
        return HTMLResponse(pages.site_page(v.site_page(site, **_site_args(request))))

    def page_component(request: Request) -> Any:
        site = request.path_params["site"]
        if v.harvest is None:
            v.check_site(site)
            return HTMLResponse(pages.layout(site, f"<h1>{pages.e(site)}</h1>{pages.no_harvest()}", False))
        return HTMLResponse(pages.component_page(v.component_page(site, parse_component(
            request.path_params["component"]))))

    def page_search(request: Request) -> Any:
        query = request.query_params.get("q", "")
        result = v.search(query) if query and v.harvest is not None else None
        return HTMLResponse(pages.search_page(query, result, v.harvest is not None))

    def page_probe(request: Request) -> Any:
        return HTMLResponse(pages.probe_page(v.site_names, v.harvest is not None))

    def page_ablate(request: Request) -> Any:
        return HTMLResponse(pages.ablate_page(v.site_names, v.harvest is not None))

    routes = [
        Route("/", _handler(page_run)),
        Route("/site/{site}", _handler(page_site)),
        Route("/component/{site}/{component}", _handler(page_component)),
        Route("/search", _handler(page_search)),
        Route("/probe", _handler(page_probe)),
        Route("/ablate", _handler(page_ablate)),
        Route("/healthz", _handler(healthz)),
        Route("/api/run", _handler(api_run)),
        Route("/api/sites", _handler(api_sites)),
        Route("/api/sites/{site}/components", _handler(api_components)),
        Route("/api/components/{site}/{component}", _handler(api_component)),
        Route("/api/search", _handler(api_search)),
        Route("/api/probe", _live(Viewer.probe, v), methods=["POST"]),
        Route("/api/ablate", _live(Viewer.ablate, v), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = {404: f"nothing at {request.url.path}", 405: f"{request.method} is not allowed here"}.get(
            status, exc.detail if isinstance(exc, HTTPException) else "error")
        return error(status, message)

    async def internal_error(request: Request, exc: Exception) -> Response:
        LOG.exception("pdc view: internal error on %s", request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    from starlette.middleware import Middleware

    middleware = [Middleware(HostCheck, hosts=list(hosts))] if hosts is not None else []
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error},
                     middleware=middleware, debug=False)


__all__ = ["make_app", "MAX_BODY", "HostCheck", "LOOPBACK_NAMES"]
