"""Who may use a console, and the checks every request passes before any page code runs.

Decides: the operator token (a random secret in a 0600 file next to the node's keys, made
on first start) or, under TLS with `client_ca`, a client certificate from that CA (the
operator is its common name), the session (a cookie signed with a per-process key, HttpOnly,
SameSite=Strict, Secure under TLS, eight hours), the CSRF token each form carries (bound to
the session), and that a state-changing request comes from the console's own origin
(Origin, else Referer; Sec-Fetch-Site, when sent, must be same-origin) to the console's own host
name (a DNS-rebinding page gets a 400). Does not decide what an operator may do once in:
the node's own code does (node/approvals.py and the owner's policy).

Every refusal fails closed: no session on a page is a redirect to the login page, no
session on /metrics without a bearer token is a 401, and a missing or wrong CSRF token, a
missing Origin or a foreign one is a 403. The token is never logged or put in a page.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from teenet.config import ConsoleConfig
from teenet.errors import InputError
from teenet.keyfiles import read_secret_file, write_secret_file

COOKIE = "teenet_console"
# Where the server puts the common name of a client certificate TLS verified (console.server).
CLIENT_CERT_SCOPE_KEY = "teenet.client_certificate"
SESSION_SECONDS = 8 * 3600
TOKEN_BYTES = 32
# Failed logins allowed per window, across all clients (a loopback console has few).
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0


def load_or_create_token(path: Path) -> str:
    """The operator token in `path`, made (0600, in a 0700 folder) if absent. Read and written
    by teenet.keyfiles like any key: a token others may read, or a symbolic link, is refused."""
    if not path.exists() and not path.is_symlink():
        token = secrets.token_urlsafe(TOKEN_BYTES)
        write_secret_file(path, (token + "\n").encode())
        return token
    token = read_secret_file(path).decode("utf-8", "replace").strip()
    if len(token) < 16:
        raise InputError("the console token file holds fewer than 16 characters", source=str(path))
    return token


@dataclass(frozen=True)
class Session:
    """A logged-in operator: the name recorded in the audit log, and the session's CSRF token."""

    operator: str
    csrf: str


class ConsoleGate:
    """The token, the session signer and the origin rules of one console."""

    def __init__(self, config: ConsoleConfig, token: str) -> None:
        self.config = config
        self._token = token.encode()
        self._signer = URLSafeTimedSerializer(secrets.token_bytes(32), salt="teenet-console-session")
        self._failures: list[float] = []
        self._lock = threading.Lock()
        scheme = "https" if config.tls else "http"
        hosts = {config.listen}
        if config.loopback:
            hosts |= {f"127.0.0.1:{config.port}", f"localhost:{config.port}", f"[::1]:{config.port}"}
        self.hosts = frozenset(hosts)
        self.origins = frozenset(f"{scheme}://{h}" for h in hosts)

    # the token ---------------------------------------------------------------------------
    def token_matches(self, presented: str) -> bool:
        return hmac.compare_digest(presented.strip().encode(), self._token)

    def login_allowed(self) -> bool:
        """False while too many logins failed lately (slows guessing; the token is 256 bits)."""
        now = time.monotonic()
        with self._lock:
            self._failures = [t for t in self._failures if now - t < FAILURE_WINDOW]
            return len(self._failures) < MAX_FAILURES

    def note_failure(self) -> None:
        with self._lock:
            self._failures.append(time.monotonic())

    # sessions ----------------------------------------------------------------------------
    def new_session(self, operator: str) -> tuple[Session, str]:
        session = Session(operator, secrets.token_urlsafe(24))
        return session, self._signer.dumps({"op": session.operator, "csrf": session.csrf})

    def session_of(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("op"), str) or not isinstance(data.get("csrf"), str):
            return None
        return Session(data["op"], data["csrf"])

    def cookie_flags(self) -> dict:
        return {"httponly": True, "samesite": "strict", "secure": self.config.tls, "path": "/",
                "max_age": SESSION_SECONDS}

    # requests ----------------------------------------------------------------------------
    def host_allowed(self, host: str | None) -> bool:
        return host is not None and host in self.hosts

    def same_origin(self, origin: str | None, referer: str | None, fetch_site: str | None) -> bool:
        """A state-changing request must prove it comes from a page of this console."""
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return False
        if origin is not None:
            return origin in self.origins
        if referer:
            parts = urlsplit(referer)
            return f"{parts.scheme}://{parts.netloc}" in self.origins
        return False  # neither header: refuse (browsers send Origin on every POST)

    @staticmethod
    def csrf_matches(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())
