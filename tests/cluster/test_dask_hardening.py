"""The leader's Dask scheduler and a worker's Dask worker serve no HTTP route, listen for
HTTP on loopback only, never spill a partition to disk and speak TLS 1.3 only
(teenet/cluster/dask_tls.py HARDENED). `dashboard=False` alone leaves distributed's
/info, /json, /eventstream and /metrics pages up, without a login, on the cluster's own
interface: every task's result size (per-partition counts) would be one GET away.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import urllib.error
import urllib.request

import pytest

from teenet.cluster.ca import ClusterCA, cert_pem, key_pem, new_key
from teenet.cluster.dask_tls import LeaderScheduler, make_worker, security_for


def _http_listeners(server) -> list[tuple[str, int]]:
    return [sock.getsockname()[:2] for sock in server._sockets.values()]


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def cluster():
    ca = ClusterCA("leader-under-test")
    scheduler = LeaderScheduler(ca, host="127.0.0.1", worker_ttl=10)
    key = new_key()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start():
        return await make_worker(scheduler.address, security_for(cert_pem(ca.certificate),
                                                                 cert_pem(ca.issue("w1", key.public_key())),
                                                                 key_pem(key)), "w1")

    worker = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield scheduler, worker, ca
    finally:
        asyncio.run_coroutine_threadsafe(worker.close(), loop).result(30)
        scheduler.close()
        loop.call_soon_threadsafe(loop.stop)


@pytest.mark.parametrize("path", ["/info/main/workers.html", "/json/counts.json", "/metrics", "/health",
                                  "/eventstream", "/status"])
def test_no_http_route_is_served_by_the_scheduler_or_the_worker(cluster, path):
    scheduler, worker, _ = cluster
    for server in (scheduler._scheduler.http_server, worker.http_server):
        listeners = _http_listeners(server)
        assert listeners and all(host == "127.0.0.1" for host, _ in listeners), listeners
        assert _status(listeners[0][1], path) == 404


def test_a_worker_holds_its_partitions_in_memory_only(cluster):
    _, worker, _ = cluster
    assert type(worker.data) is dict  # not distributed's SpillBuffer, which pickles to disk


def _handshake(scheduler, ca, version):
    """A TLS handshake with the scheduler at exactly `version`, with a valid cluster certificate."""
    from teenet.cluster.dask_tls import private_files, release

    host, port = scheduler.address.removeprefix("tls://").rsplit(":", 1)
    key = new_key()
    paths = private_files({"c.pem": cert_pem(ca.issue("probe", key.public_key())), "k.pem": key_pem(key)})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=cert_pem(ca.certificate).decode())
    ctx.load_cert_chain(*paths)
    ctx.minimum_version = ctx.maximum_version = version
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                return tls.version()
    finally:
        release(paths)


def test_the_scheduler_speaks_tls_1_3_only(cluster):
    scheduler, _, ca = cluster
    assert _handshake(scheduler, ca, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"  # a cluster peer gets in...
    with pytest.raises(ssl.SSLError):
        _handshake(scheduler, ca, ssl.TLSVersion.TLSv1_2)  # ...but not over TLS 1.2
