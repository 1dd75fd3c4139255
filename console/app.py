"""The console's web application: login, the guard on every route, and the shared layout.

Decides which requests reach page code: every request must name this console's own host
(a DNS-rebinding page is refused); every page needs a session (else a redirect to
/login; a client certificate TLS verified against `client_ca` makes one in its name);
every POST must come from this console's origin and carry the session's CSRF token (else
403); /metrics takes a session or `Authorization: Bearer <operator token>` (else 401).
The pages themselves come from the role's site module (data node, compute node,
coordinator), which says what to show. Server-rendered Jinja2; htmx for the few live
fragments; no script of our own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from teenet.console.auth import CLIENT_CERT_SCOPE_KEY, COOKIE, ConsoleGate, Session
from teenet.node.approvals import MAX_OPERATOR

HERE = Path(__file__).resolve().parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
TEMPLATES.filters["when"] = lambda t: (datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                                       if t else "-")
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

Handler = Callable[[Request, Session], Awaitable[Response]]


@dataclass(frozen=True)
class NavItem:
    path: str
    title: str


@dataclass(frozen=True)
class Site:
    """One role's console: its name, navigation, guarded routes and metrics."""

    title: str              # e.g. "bank (data node)"
    nav: tuple[NavItem, ...]
    pages: Sequence[tuple[str, Handler]]       # GET, session required
    actions: Sequence[tuple[str, Handler]]     # POST, session + origin + CSRF required
    registry: CollectorRegistry
    downloads: Sequence[tuple[str, Handler]] = ()  # GET, session required, any content type


class HostGuard:
    """Refuse any request whose Host is not this console's own listen address."""

    def __init__(self, app: ASGIApp, gate: ConsoleGate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not self.gate.host_allowed(host):
                await PlainTextResponse("unknown host", status_code=400)(scope, receive, send)
                return

            async def with_headers(message: dict) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, with_headers)
            return
        await self.app(scope, receive, send)


def render(request: Request, template: str, session: Session | None, site: Site, status: int = 200,
           **context: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        site=site, session=session, path=request.url.path, csrf=session.csrf if session else "", **context)
    return HTMLResponse(html, status_code=status)


def build_app(site: Site, gate: ConsoleGate) -> ASGIApp:
    """The whole console for `site`, behind `gate`."""

    def session_of(request: Request) -> Session | None:
        return gate.session_of(request.cookies.get(COOKIE))

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = session_of(request)
            certified = request.scope.get(CLIENT_CERT_SCOPE_KEY)
            if session is None and isinstance(certified, str):
                # TLS verified a certificate from the operators' CA: its name logs in, no token
                session, cookie = gate.new_session(certified)
                response = await handler(request, session)
                response.set_cookie(COOKIE, cookie, **gate.cookie_flags())
                return response
            if session is None:
                if request.headers.get("hx-request"):
                    return PlainTextResponse("session ended; log in again", status_code=401,
                                             headers={"hx-redirect": "/login"})
                return RedirectResponse("/login", status_code=303)
            return await handler(request, session)
        return endpoint

    def action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not gate.same_origin(request.headers.get("origin"), request.headers.get("referer"),
                                    request.headers.get("sec-fetch-site")):
                return PlainTextResponse("refused: this request does not come from this console", status_code=403)
            session = session_of(request)
            if session is None:
                return PlainTextResponse("refused: not logged in", status_code=401)
            form = await request.form()
            csrf = form.get("csrf")
            if not gate.csrf_matches(session, csrf if isinstance(csrf, str) else None):
                return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403)
            return await handler(request, session)
        return endpoint

    async def login_page(request: Request) -> Response:
        return render(request, "login.html", None, site, error="")

    async def login(request: Request) -> Response:
        if not gate.same_origin(request.headers.get("origin"), request.headers.get("referer"),
                                request.headers.get("sec-fetch-site")):
            return PlainTextResponse("refused: this request does not come from this console", status_code=403)
        if not gate.login_allowed():
            return render(request, "login.html", None, site, status=429,
                          error="too many failed logins; wait a minute")
        form = await request.form()
        token, operator = form.get("token"), form.get("operator")
        operator = operator.strip() if isinstance(operator, str) else ""
        if not isinstance(token, str) or not gate.token_matches(token):
            gate.note_failure()
            return render(request, "login.html", None, site, status=401, error="wrong operator token")
        if not operator or len(operator) > MAX_OPERATOR or not operator.isprintable():
            return render(request, "login.html", None, site, status=400,
                          error=f"give your name (1..{MAX_OPERATOR} characters); the audit log records it")
        _, cookie = gate.new_session(operator)
        response = RedirectResponse(site.nav[0].path, status_code=303)
        response.set_cookie(COOKIE, cookie, **gate.cookie_flags())
        return response

    async def logout(request: Request, session: Session) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def home(request: Request, session: Session) -> Response:
        return RedirectResponse(site.nav[0].path, status_code=303)

    async def metrics(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        if session_of(request) is None and not (bearer and gate.token_matches(bearer)):
            return PlainTextResponse("refused: log in or send Authorization: Bearer <operator token>",
                                     status_code=401, headers={"www-authenticate": "Bearer"})
        return Response(generate_latest(site.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", action(logout), methods=["POST"]),
        Route("/", page(home), methods=["GET"]),
        Route(gate.config.metrics_path, metrics, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    routes += [Route(path, page(h), methods=["GET"]) for path, h in (*site.pages, *site.downloads)]
    routes += [Route(path, action(h), methods=["POST"]) for path, h in site.actions]
    return HostGuard(Starlette(routes=routes), gate)
