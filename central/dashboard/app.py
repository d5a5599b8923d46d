"""Central's dashboard: server-rendered pages (Jinja2, plain forms) over the service the API
uses, mounted by ``central.api.create_app`` at ``/dashboard``.

Logging in means pasting an API token: it is checked as the API checks a bearer token, and
the session it opens is kept in central's database with the token's hash, never the token
(``central.dashboard.store``: every central process knows every session; the browser holds
a random session id in an HttpOnly, SameSite=Strict cookie, ``Secure`` over TLS). Every
request authenticates that hash again, so a revoked or expired token ends its sessions at
once, and a page's data is what the API would give that token: an admin sees the network, a
researcher their own trains, a station token no page. Every POST carries the session's CSRF
token. The note after an action is a fixed text whose key travels in a short-lived HttpOnly
cookie set by the action itself: neither a URL's text nor a link can put a note on a page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from central.api.context import Context
from central.dashboard import pages
from central.dashboard.store import SessionStore
from central.errors import ServiceError
from central.identities import Caller, hash_token
from trains.webform import FormLimit
from trains.websession import Session, Sessions, csrf_ok

HERE = Path(__file__).parent
PREFIX = "/dashboard"
COOKIE = "pht_dashboard"
NOTE_COOKIE = "pht_dashboard_note"  # the key of the note the next page shows, once
NOTE_S = 60
SESSION_S = 30 * 60.0
MAX_TOKEN_CHARS = 200  # an API token is 48; anything longer is not one
# nothing from elsewhere, no framing, no inline script: live.js is the one script, same origin
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# the only texts a redirect can put on a page, by key: the key travels in NOTE_COOKIE,
# which only the action's own answer sets (a link cannot)
MESSAGES = {
    "wrong": "That token is unknown, expired or revoked.",
    "locked": "Too many failed logins from here: wait 15 minutes.",
    "ended": "Your session ended (logged out, expired, or its token was revoked).",
    "revoked": "Revoked: that token no longer works, in the API or here.",
}


class CsrfRefused(Exception):
    """A POST without its session's CSRF token."""


class Web:
    """Sessions and rendering, shared by the login routes and the pages."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.sessions = SessionStore(ctx.service.sessions, SESSION_S)
        # the failed logins the limit counts, in this process's memory: behind several
        # processes a guesser gets the limit once per process (docs/central-operations.md)
        self.failures = Sessions(SESSION_S)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))

    def session(self, request: Request) -> Session:
        """The request's live session, or a new anonymous one."""
        return self.sessions.get_or_start(request.cookies.get(COOKIE))

    async def settle(self, request: Request) -> None:
        """Look the session up off the event loop (a database read) before a page that
        is rendered from an async handler."""
        if getattr(request.state, "session", None) is None:
            request.state.session = await run_in_threadpool(self.session, request)

    def finish(self, request: Request, response: Response, session: Session) -> Response:
        """Add the security headers and the session cookie to ``response``."""
        response.headers.update(HEADERS)
        response.set_cookie(
            COOKIE,
            session.id,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=int(SESSION_S),
            path=PREFIX,
        )
        return response

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        """Render ``template`` for this request's session and caller."""
        session: Session = getattr(request.state, "session", None) or self.session(request)
        key = request.cookies.get(NOTE_COOKIE, "")
        context.setdefault("message", MESSAGES.get(key, ""))
        context.update(
            session=session,
            who=getattr(request.state, "who", None),
            path=request.url.path,
            prefix=PREFIX,
        )
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        if key:  # shown once
            response.delete_cookie(NOTE_COOKIE, path=PREFIX)
        return self.finish(request, response, session)

    def go(self, request: Request, to: str, session: Session, message: str = "") -> Response:
        """Redirect (303) to a dashboard path; the page there shows one of the fixed
        ``MESSAGES``, by key."""
        assert message in MESSAGES or not message
        response = self.finish(request, RedirectResponse(PREFIX + to, status_code=303), session)
        if message:
            response.set_cookie(
                NOTE_COOKIE,
                message,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                max_age=NOTE_S,
                path=PREFIX,
            )
        return response

    def refused(self, request: Request, session: Session) -> Response:
        """The 403 page for a form without its session's CSRF token."""
        request.state.session = session
        return self.page(request, "error.html", 403, title="Refused",
                         text="This form is not from your current dashboard session: "
                         "log in again and send it again.")  # fmt: skip

    async def caller(self, session: Session) -> Caller | None:
        """The caller of the session's token, checked now (None: log in again)."""
        if session.user is None or session.secret is None:
            return None
        found = await run_in_threadpool(
            self.ctx.service.identities.authenticate_hash, session.secret
        )
        if found is None or found.role == "station":
            await run_in_threadpool(self.sessions.end, session)
            return None
        return found


def create_dashboard(ctx: Context) -> FastAPI:
    """The dashboard app for one central's context (mount it at ``/dashboard``)."""
    web = Web(ctx)

    async def csrf_checked(request: Request) -> None:
        # every POST, before its route reads a field: FastAPI caches the parsed form, so
        # the route's own Form parameters read the same one
        if request.method == "POST":
            token = (await request.form()).get("csrf")
            session = await run_in_threadpool(web.session, request)
            if not csrf_ok(session, token if isinstance(token, str) else None):
                raise CsrfRefused()

    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(csrf_checked)]
    )
    app.add_middleware(FormLimit)  # a form's body is bounded before anything parses it
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        await web.settle(request)
        # the service's messages name only what the caller sent in a form or a bounded id
        if request.url.path.endswith("/live.json"):  # the script's endpoint answers as the API
            body = {"code": exc.code, "message": exc.message, "detail": None}
            return JSONResponse(body, exc.status, headers=HEADERS)
        return web.page(request, "error.html", exc.status, title="Not done", text=exc.message)

    @app.exception_handler(CsrfRefused)
    async def _refused(request: Request, _: CsrfRefused) -> Response:
        return web.refused(request, await run_in_threadpool(web.session, request))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        await web.settle(request)
        title = "Not found" if exc.status_code == 404 else "Not done"
        return web.page(request, "error.html", exc.status_code, title=title,
                        text="There is no such page." if exc.status_code == 404
                        else "The dashboard does not answer this request.")  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, _: RequestValidationError) -> Response:
        await web.settle(request)
        if request.method == "POST":  # fixed texts: the values sent are not repeated
            return web.page(
                request,
                "error.html",
                422,
                title="Not done",
                text="The form was incomplete or a field was not valid.",
            )
        return web.page(request, "error.html", 404, title="Not found",
                        text="There is no such page.")  # fmt: skip

    @app.get("/login")
    def login_page(request: Request) -> Response:
        return web.page(request, "login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        session = await run_in_threadpool(web.session, request)
        form = await request.form()
        csrf, token = form.get("csrf"), form.get("token")
        if not csrf_ok(session, csrf if isinstance(csrf, str) else None):
            return web.refused(request, session)
        token = token.strip() if isinstance(token, str) else ""
        client = f"ip:{request.client.host if request.client else '?'}"
        if web.failures.locked(client):
            return web.go(request, "/login", session, "locked")
        found = None
        if 0 < len(token) <= MAX_TOKEN_CHARS:
            found = await run_in_threadpool(ctx.service.authenticate, token)
        if found is None:
            web.failures.failed(client)
            return web.go(request, "/login", session, "wrong")
        if found.role == "station":  # a station's token works the API, not these pages
            request.state.session = session
            return web.page(request, "error.html", 403, title="No dashboard for stations",
                            text="A station token opens no dashboard page. Log in with an "
                            "admin's or a researcher's token.")  # fmt: skip
        web.failures.succeeded(client)  # only a login that opens a page clears the count
        opened = await run_in_threadpool(web.sessions.log_in, found.name, hash_token(token))
        return web.go(request, "/", opened)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = await run_in_threadpool(web.session, request)
        csrf = (await request.form()).get("csrf")
        if not csrf_ok(session, csrf if isinstance(csrf, str) else None):
            return web.refused(request, session)
        await run_in_threadpool(web.sessions.end, session)
        fresh = await run_in_threadpool(web.sessions.get_or_start, None)
        return web.go(request, "/login", fresh, "ended")

    @app.middleware("http")
    async def need_login(request: Request, call_next: Any) -> Response:
        path = request.url.path.removeprefix(PREFIX)
        if path.startswith(("/login", "/logout", "/static/")):
            response: Response = await call_next(request)
            response.headers.update(HEADERS)
            return response
        session = await run_in_threadpool(web.session, request)
        who = await web.caller(session)
        if who is None:
            fresh = session
            if session.user is not None:
                fresh = await run_in_threadpool(web.sessions.get_or_start, None)
            if path == "/live.json":  # the script stops polling; the page says nothing new
                return web.finish(request, JSONResponse({"code": "unauthenticated"}, 401), fresh)
            if request.method != "GET":
                return web.refused(request, fresh)
            return web.go(request, "/login", fresh, "ended" if session.user else "")
        request.state.session = session
        request.state.who = who
        request.state.caller = who  # central's access log names the caller, as for the API
        response = await call_next(request)
        return web.finish(request, response, session)

    pages.add_pages(app, web)
    return app
