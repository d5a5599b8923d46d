"""The console's web application (FastAPI, server-rendered Jinja2 pages, plain forms).

Every page but the login page needs a logged-in session; every POST needs the session's
CSRF token in its form (a POST without it is refused with 403 and changes nothing). The
actions are ``station.service``'s, so they are checked and audited exactly as the CLI's,
with ``by = "console:<user>"``. Pages show names, digests, sizes and shapes: never a
patient data value (outputs are sealed; only their disclosure summary is read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from station.config import StationConfig
from station.console.sessions import Session, Sessions, csrf_ok
from station.console.users import Users
from station.console.views import NOTES, CodeCache, code_diff, hop_view, last_approved, note_text
from station.queue import HopState
from station.service import StationService, manifest_of
from trains.errors import PhtError
from trains.webform import FormLimit

HERE = Path(__file__).parent
NO_HOP = "No hop with this id here: the Waiting and History pages list them."
# what a browser may do with these pages: nothing from elsewhere, no framing, no scripts
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(config: StationConfig) -> FastAPI:
    """The console of the station ``config`` describes."""
    settings = config.console
    lifetime = (settings.session_minutes if settings else 30.0) * 60
    service = StationService(config)
    users = Users(config.state_dir)
    sessions = Sessions(lifetime)
    code = CodeCache(config)
    # cookies are per host, not per port: two stations' consoles on one machine keep apart
    cookie = f"pht_console_{config.station.name}"
    note_cookie = f"{cookie}_note"  # the key of the message the next page shows, once
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(FormLimit)  # a form's body is bounded before anything parses it
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, session: Session, name: str, **context: Any) -> Response:
        context.update(session=session, station=config.station.name, path=request.url.path)
        response = templates.TemplateResponse(request, name, context)
        if request.cookies.get(note_cookie):  # shown once
            response.delete_cookie(note_cookie, path="/")
        return _finish(response, session)

    def note_of(request: Request) -> str:
        """The console's own message the last action chose (its key came in a cookie only
        the action's answer sets: a link cannot pick one)."""
        return note_text(request.cookies.get(note_cookie, ""))

    def _finish(response: Response, session: Session) -> Response:
        response.headers.update(HEADERS)
        response.set_cookie(
            cookie, session.id, httponly=True, samesite="strict", max_age=int(lifetime), path="/"
        )
        return response

    def go(to: str, session: Session, note: str = "") -> Response:
        assert not note or note in NOTES  # a key of the console's own messages, never text
        response = _finish(RedirectResponse(to, status_code=303), session)
        if note:
            response.set_cookie(
                note_cookie, note, httponly=True, samesite="strict", max_age=60, path="/"
            )
        return response

    def current(request: Request) -> Session:
        return sessions.get_or_start(request.cookies.get(cookie))

    def ended(request: Request, session: Session) -> bool:
        """The browser came with a session this process does not know: it expired, or
        the daemon restarted (sessions live in memory only)."""
        given = request.cookies.get(cookie)
        return bool(given) and given != session.id

    async def checked_form(request: Request, session: Session) -> dict[str, str] | None:
        """The form, if the session is logged in and the form carries its CSRF token."""
        form = await request.form()
        token = form.get("csrf")
        if session.user is None or not csrf_ok(session, token if isinstance(token, str) else None):
            return None
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def refused(session: Session) -> Response:
        response = HTMLResponse(
            "<!doctype html><title>Refused</title><p>Refused: this form is not from your "
            "current console session (log in again and resubmit).</p>",
            status_code=403,
        )
        return _finish(response, session)

    @app.get("/login")
    def login_page(request: Request) -> Response:
        session = current(request)
        return page(request, session, "login.html", note=note_of(request),
                    no_users=not users.names())  # fmt: skip

    @app.post("/login")
    async def login(request: Request) -> Response:
        session = current(request)
        form = await request.form()
        token, user, password = (form.get(k) for k in ("csrf", "user", "password"))
        if not csrf_ok(session, token if isinstance(token, str) else None):
            # a login form from before a restart: say so, rather than refuse with an error
            if ended(request, session):
                return go("/login", session, "session-ended")
            return refused(session)
        user = user if isinstance(user, str) else ""
        client = f"ip:{request.client.host if request.client else '?'}"
        keys = (f"user:{user[:64]}", client)
        if sessions.locked(*keys):  # not audited: a guesser could fill the log
            return go("/login", session, "too-many")
        if not users.check(user, password if isinstance(password, str) else ""):
            sessions.failed(*keys)
            service.audit.append("console_login", user=user[:64], result="failed")
            return go("/login", session, "wrong-login")
        sessions.succeeded(*keys)
        service.audit.append("console_login", user=user, result="ok")
        return go("/", sessions.log_in(session, user))

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = current(request)
        if await checked_form(request, session) is None:
            return refused(session)
        sessions.end(session)
        return go("/login", sessions.get_or_start(None), "logged-out")

    @app.middleware("http")
    async def need_login(request: Request, call_next: Any) -> Response:
        open_paths = ("/login", "/static/")
        if request.url.path.startswith(open_paths):
            response: Response = await call_next(request)
            response.headers.update(HEADERS)
            return response
        session = current(request)
        if session.user is None:
            if ended(request, session):  # nothing was done: the next step is to log in
                return go("/login", session, "session-ended")
            if request.method == "POST":
                return refused(session)
            return go("/login", session)
        request.state.session = session
        response = await call_next(request)
        return response

    @app.get("/")
    def pending(request: Request) -> Response:
        session: Session = request.state.session
        waiting = [hop_view(r, config) for r in service.waiting()]
        return page(request, session, "pending.html", hops=waiting, note=note_of(request),
                    standing=service.standing())  # fmt: skip

    @app.get("/hops/{rid}")
    def hop(request: Request, rid: str) -> Response:
        return hop_page(request, request.state.session, rid, note_of(request))

    def hop_page(
        request: Request, session: Session, rid: str, note: str, status: int = 200
    ) -> Response:
        try:
            record = service.get(rid)
        except PhtError:  # its message quotes the id, and a page never shows a URL's text
            return page(request, session, "error.html", message=NO_HOP)
        view = hop_view(record, config)
        files: dict[str, str] = {}
        why = None
        manifest = manifest_of(record)
        diff = compared = None
        if manifest is not None and record.state == HopState.PENDING:
            files, why = code.files(manifest.image)
            previous = last_approved(record, service.history())
            earlier = manifest_of(previous) if previous is not None else None
            if previous is not None and earlier is not None and not why:
                before, _ = code.files(earlier.image)
                compared = {"id": previous.id, "version": earlier.version}
                diff = code_diff(before, files, earlier.version, manifest.version)
        response = page(request, session, "hop.html", hop=view, files=files, files_error=why,
                        note=note, diff=diff, compared=compared)  # fmt: skip
        response.status_code = status
        return response

    @app.post("/hops/{rid}/{action}")
    async def act(request: Request, rid: str, action: str) -> Response:
        session: Session = request.state.session
        form = await checked_form(request, session)
        if form is None:
            return refused(session)
        by = f"console:{session.user}"
        reason = form.get("reason", "")
        try:
            record = service.get(rid)
            if action == "approve-train":
                service.approve_train(record.train_id, by, seen=record.id)
                note = "approved-train"
            elif action == "approve-hop":
                service.approve_hop(record.id, by)
                note = "approved-hop"
            elif action == "reject":
                service.reject(record.id, reason, by)
                note = "rejected"
            elif action == "release":
                service.release(record.id, by)
                note = "released"
            elif action == "refuse":
                service.refuse_release(record.id, reason, by)
                note = "refused"
            else:
                return page(request, session, "error.html", message="No such action.")
        except PhtError as exc:  # nothing changed: the hop page again, saying why (no redirect)
            return hop_page(request, session, rid, f"Not done: {exc}", status=409)
        return go(f"/hops/{record.id}", session, note)

    @app.get("/history")
    def history(request: Request) -> Response:
        session: Session = request.state.session
        return page(request, session, "history.html",
                    hops=[hop_view(r, config) for r in service.history()])  # fmt: skip

    @app.get("/audit")
    def audit(request: Request) -> Response:
        session: Session = request.state.session
        return page(request, session, "audit.html", problems=service.verify_audit(),
                    entries=service.audit_entries()[::-1], path=service.audit.path)  # fmt: skip

    @app.get("/health")
    def health(request: Request) -> Response:
        session: Session = request.state.session
        return page(request, session, "health.html", checks=service.health())

    return app
