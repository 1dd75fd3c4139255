"""The console's gate without a browser: config, token file, sessions, CSRF, origin, host, /metrics.

The app under test is the coordinator's console over a real coordinator (its SQLite store
and audit chain in tmp_path), driven through Starlette's TestClient; the jobs are real
signed jobs moved through the coordinator's own state machine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordinator"))  # the coordinator's test kit
from coordinator_testkit import make_world, run_to_running  # noqa: E402

from teenet.audit import AuditLog  # noqa: E402
from teenet.config import ConsoleConfig  # noqa: E402
from teenet.console.app import build_app  # noqa: E402
from teenet.console.auth import COOKIE, ConsoleGate, load_or_create_token  # noqa: E402
from teenet.console.sites import coordinator_site  # noqa: E402
from teenet.coordinator.config import load_coordinator_config  # noqa: E402
from teenet.coordinator.state import Coordinator  # noqa: E402
from teenet.coordinator.store import CoordinatorStore  # noqa: E402
from teenet.errors import InputError  # noqa: E402
from teenet.logformat import JsonLineFormatter, job_context  # noqa: E402

BASE = "http://127.0.0.1:8700"


def coordinator_config(tmp_path: Path, console: str) -> Path:
    p = tmp_path / "coordinator.yaml"
    p.write_text("name: coordinator\nlisten: 127.0.0.1:7000\nconsortium: consortium.yaml\n"
                 "tls: {ca: ca.pem, cert: c.pem, key: c.key}\n" + console)
    return p


def test_console_is_off_unless_configured_and_loopback_only_without_tls(tmp_path):
    assert load_coordinator_config(coordinator_config(tmp_path, "")).console is None
    cfg = load_coordinator_config(coordinator_config(tmp_path, "console: {listen: 127.0.0.1:8700}\nlog_format: json\n"))
    assert cfg.console == ConsoleConfig(listen="127.0.0.1:8700", token_file=tmp_path / "console.token")
    assert cfg.console.url == "http://127.0.0.1:8700/" and cfg.log_format == "json"
    with pytest.raises(InputError, match="beyond loopback: add tls"):
        load_coordinator_config(coordinator_config(tmp_path, "console: {listen: 0.0.0.0:8700}\n"))
    tls = load_coordinator_config(coordinator_config(
        tmp_path, "console: {listen: 0.0.0.0:8700, tls: {cert: w.pem, key: w.key}, metrics_path: /m}\n")).console
    assert tls.tls and tls.url.startswith("https://") and tls.metrics_path == "/m" and tls.client_ca is None
    certs = load_coordinator_config(coordinator_config(
        tmp_path, "console: {listen: 127.0.0.1:8700, tls: {cert: w.pem, key: w.key, client_ca: ops-ca.pem}}\n")).console
    assert certs.client_ca == tmp_path / "ops-ca.pem"
    with pytest.raises(InputError, match="not one of: text, json"):
        load_coordinator_config(coordinator_config(tmp_path, "log_format: yaml\n"))


def test_the_token_file_is_made_private_and_refused_when_others_may_read_it(tmp_path):
    path = tmp_path / "keys" / "console.token"
    token = load_or_create_token(path)
    assert len(token) >= 40 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert load_or_create_token(path) == token
    os.chmod(path, 0o644)
    with pytest.raises(InputError, match="readable or writable by group or others"):
        load_or_create_token(path)
    os.chmod(path, 0o600)
    os.chmod(path.parent, 0o755)  # the folder too must be this user's alone
    with pytest.raises(InputError, match="accessible by group or others"):
        load_or_create_token(path)


@pytest.fixture
def console(tmp_path):
    world = make_world()
    store = CoordinatorStore(tmp_path / "coordinator.db")
    audit = AuditLog(store.conn, ed25519.Ed25519PrivateKey.generate(), lock=store.lock)
    coordinator = Coordinator(store, audit, world.consortium, clock=world.clock)
    config = ConsoleConfig(listen="127.0.0.1:8700", token_file=tmp_path / "console.token")
    token = load_or_create_token(config.token_file)
    gate = ConsoleGate(config, token)
    client = TestClient(build_app(coordinator_site(coordinator), gate), base_url=BASE, follow_redirects=False)
    yield client, token, world, coordinator
    store.close()


def login(client, token, operator="ops"):
    return client.post("/login", data={"token": token, "operator": operator}, headers={"origin": BASE})


def test_pages_need_a_session_and_metrics_a_session_or_the_token(console):
    client, token, _, _ = console
    r = client.get("/jobs")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/jobs", headers={"hx-request": "true"}).status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": "Bearer " + token[:-1] + "x"}).status_code == 401
    assert client.get("/metrics", headers={"authorization": f"Bearer {token}"}).status_code == 200


def test_login_sets_a_strict_httponly_cookie_and_refuses_wrong_tokens_and_foreign_origins(console):
    client, token, _, _ = console
    assert client.post("/login", data={"token": "nope", "operator": "ops"}, headers={"origin": BASE}).status_code == 401
    assert client.post("/login", data={"token": token, "operator": "ops"}).status_code == 403  # no Origin
    assert client.post("/login", data={"token": token, "operator": "ops"},
                       headers={"origin": "http://evil.example"}).status_code == 403
    r = login(client, token)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert client.get("/jobs").status_code == 200
    # a tampered session is no session
    client.cookies.set(COOKIE, client.cookies.get(COOKIE)[:-2] + "xx")
    assert client.get("/jobs").status_code == 303


def test_too_many_failed_logins_are_slowed(console):
    client, token, _, _ = console
    for _ in range(10):
        r = client.post("/login", data={"token": "x" * 40, "operator": "o"}, headers={"origin": BASE})
        assert r.status_code == 401
    assert login(client, token).status_code == 429


def test_posts_need_the_sessions_csrf_token_and_this_origin(console):
    client, token, _, _ = console
    login(client, token)
    page = client.get("/jobs").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/logout", data={"csrf": "forged"}, headers={"origin": BASE}).status_code == 403
    assert client.post("/logout", data={}, headers={"origin": BASE}).status_code == 403
    assert client.post("/logout", data={"csrf": csrf}, headers={"origin": "http://127.0.0.1:9999"}).status_code == 403
    assert client.post("/logout", data={"csrf": csrf},
                       headers={"origin": BASE, "sec-fetch-site": "cross-site"}).status_code == 403
    assert client.post("/logout", data={"csrf": csrf}, headers={"referer": BASE + "/jobs"}).status_code == 303


def test_a_foreign_host_name_is_refused_and_pages_carry_security_headers(console):
    client, token, _, _ = console
    assert client.get("/login", headers={"host": "rebound.example:8700"}).status_code == 400
    r = client.get("/login")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert token not in r.text


def test_the_coordinator_console_shows_states_and_counts_and_metrics_follow(console):
    client, token, world, coordinator = console
    login(client, token)
    running = run_to_running(world, coordinator)
    coordinator.submit_job(*world.signed_job())
    page = client.get("/jobs").text
    assert "<td>running</td><td>1</td>" in page and "<td>awaiting_approvals</td><td>1</td>" in page
    assert running[:12] in page
    metrics = client.get("/metrics").text
    assert 'teenet_jobs{state="running"} 1.0' in metrics
    assert 'teenet_phase_seconds_count{phase="submitted"} 2.0' in metrics


def test_json_log_lines_carry_the_job_id():
    import json
    import logging

    record = logging.LogRecord("teenet.node", logging.INFO, __file__, 1, "job %s: shipped %s", ("ab" * 8, "t"), None)
    line = json.loads(JsonLineFormatter().format(record))
    assert line["job_id"] == "ab" * 8 and line["message"] == f"job {'ab' * 8}: shipped t" and line["level"] == "info"
    other = json.loads(JsonLineFormatter().format(logging.LogRecord("x", logging.WARNING, "", 1, "no job", (), None)))
    assert other["job_id"] is None
    with job_context("cd" * 32):  # a line inside a work item's handling names its job in full
        line = JsonLineFormatter().format(logging.LogRecord("x", logging.WARNING, "", 1, "INSECURE", (), None))
    inside = json.loads(line)
    assert inside["job_id"] == "cd" * 32


def test_over_tls_a_certificate_from_the_operators_ca_logs_in_by_its_name(tmp_path, console):
    import socket
    import ssl

    import httpx

    from teenet.console.server import ConsoleServer
    from teenet.pki import DevPki

    _, _, world, coordinator = console
    server_pki, operators, strangers = (DevPki.create(tmp_path / n) for n in ("server", "operators", "strangers"))
    server_tls, dana, eve = server_pki.issue("console"), operators.issue("dana"), strangers.issue("eve")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ConsoleConfig(listen=f"127.0.0.1:{port}", token_file=tmp_path / "tls.token", tls_cert=server_tls.cert,
                           tls_key=server_tls.key, client_ca=operators.ca_path)
    running = ConsoleServer(config, coordinator_site(coordinator)).start()
    url = f"https://127.0.0.1:{port}"

    def client(cert=None) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(server_pki.ca_path))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
        return httpx.Client(verify=ctx, follow_redirects=False)

    try:
        with client(dana) as c:
            r = c.get(url + "/jobs")
            assert r.status_code == 200 and '<span class="operator">dana</span>' in r.text
            assert "Secure" in r.headers["set-cookie"]
        with client() as c:  # no certificate: the token login, as on loopback
            assert c.get(url + "/jobs").status_code == 303
            assert c.get(url + "/metrics").status_code == 401
        with client(eve) as c, pytest.raises(httpx.TransportError):  # a certificate from another CA
            c.get(url + "/jobs")
        with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
            httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=5)
    finally:
        running.stop()
