"""Run a console in a thread of its daemon: uvicorn without signal handlers (the daemon owns them).

Decides how a console starts and stops beside a node or the coordinator: the operator
token is loaded (or made, 0600) before the port opens, TLS is on whenever the config
names a certificate, start() returns once the port is bound (or raises saying why), and
stop() ends it within a few seconds. What is served is console.app's business.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from teenet.config import ConsoleConfig
from teenet.errors import TeenetError

from teenet.console.app import Site, build_app
from teenet.console.auth import CLIENT_CERT_SCOPE_KEY, ConsoleGate, load_or_create_token

log = logging.getLogger("teenet.console")
START_TIMEOUT = 15.0


class ClientCertificateH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, handing the application the common name of the client
    certificate TLS verified on this connection (uvicorn passes none to ASGI apps)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        names = [v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"]
        if len(names) == 1:
            inner, name = self.app, names[0]

            async def app(scope, receive, send):  # type: ignore[no-untyped-def]
                await inner({**scope, CLIENT_CERT_SCOPE_KEY: name}, receive, send)

            self.app = app  # type: ignore[assignment]


class ConsoleServer:
    """One console: `start()` binds and serves in a daemon thread; `stop()` shuts it down."""

    def __init__(self, config: ConsoleConfig, site: Site) -> None:
        self.config = config
        self.gate = ConsoleGate(config, load_or_create_token(config.token_file))
        options: dict[str, Any] = {}
        if config.tls:
            options = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
        if config.client_ca is not None:
            # A certificate is asked for, not required: operators without one use the token.
            options.update(ssl_ca_certs=str(config.client_ca), ssl_cert_reqs=ssl.CERT_OPTIONAL,
                           http=ClientCertificateH11)
        self._server = uvicorn.Server(uvicorn.Config(
            build_app(site, self.gate), host=config.host, port=config.port, log_level="warning",
            access_log=False, lifespan="off", server_header=False, timeout_graceful_shutdown=2, **options))
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # older uvicorn
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self) -> "ConsoleServer":
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise TeenetError(f"the console could not listen on {self.config.listen}: "
                                  f"{self._error or 'the server stopped during start-up'}")
            if time.monotonic() > deadline:
                raise TeenetError(f"the console did not start within {START_TIMEOUT:.0f}s on {self.config.listen}")
            time.sleep(0.02)
        log.info("console on %s (operator token in %s)", self.config.url, self.config.token_file)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_node_console(rt: Any, workers: int) -> ConsoleServer:
    """The console of a node daemon (`rt` a NodeRuntime with `config.console` set)."""
    from teenet.console.sites import compute_site, data_site

    site = data_site(rt) if rt.config.role == "data" else compute_site(rt, workers)
    return ConsoleServer(rt.config.console, site).start()


def start_coordinator_console(config: ConsoleConfig, coordinator: Any) -> ConsoleServer:
    from teenet.console.sites import coordinator_site

    return ConsoleServer(config, coordinator_site(coordinator)).start()
