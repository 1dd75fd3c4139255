"""The leader's Dask scheduler and a worker's Dask worker, on leader-issued TLS only.

Dask's TLS is mutual: with `require_encryption=True` and the cluster CA as the only trust
anchor, a peer without a certificate from this leader's in-memory CA cannot complete the
handshake, so Dask's pickled messages come only from admitted, attested peers of this one
cluster (docs/threat-model.md). The dashboard is off. dask/distributed are imported here,
lazily, never at CLI start.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

from teenet.cluster.ca import ClusterCA, cert_pem, key_pem, new_key


def private_files(files: Mapping[str, bytes]) -> tuple[str, ...]:
    """Write files into a fresh 0700 temp dir (removed at exit); return their paths in order."""
    directory = Path(tempfile.mkdtemp(prefix="teenet-cluster-"))
    os.chmod(directory, 0o700)
    atexit.register(shutil.rmtree, directory, True)
    paths = []
    for name, data in files.items():
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        paths.append(str(path))
    return tuple(paths)


def security_for(ca_pem: bytes, cert: bytes, key: bytes) -> Any:
    """A distributed.Security trusting only `ca_pem`, presenting cert/key in every role."""
    from distributed import Security

    ca_file, cert_file, key_file = private_files({"ca.pem": ca_pem, "cert.pem": cert, "key.pem": key})
    return Security(tls_ca_file=ca_file, tls_client_cert=cert_file, tls_client_key=key_file,
                    tls_scheduler_cert=cert_file, tls_scheduler_key=key_file,
                    tls_worker_cert=cert_file, tls_worker_key=key_file, require_encryption=True,
                    tls_min_version=None)


def leader_security(ca: ClusterCA, name: str = "leader") -> Any:
    key = new_key()
    cert = ca.issue(name, key.public_key(), hosts=("127.0.0.1",))
    return security_for(cert_pem(ca.certificate), cert_pem(cert), key_pem(key))


class LeaderScheduler:
    """A distributed.Scheduler running on its own event loop thread inside the leader."""

    def __init__(self, ca: ClusterCA, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.security = leader_security(ca)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cluster-scheduler", daemon=True)
        self._thread.start()
        self._scheduler = asyncio.run_coroutine_threadsafe(self._start(host, port), self._loop).result(60)
        self.address: str = self._scheduler.address

    async def _start(self, host: str, port: int) -> Any:
        import dask
        from distributed import Scheduler

        # No work stealing: a task runs where its partitions are, so rows move between
        # workers only when a function's own task needs them, never to balance load.
        dask.config.set({"distributed.scheduler.work-stealing": False})
        scheduler = Scheduler(host=host, port=port, protocol="tls", security=self.security,
                              dashboard=False, dashboard_address=None, idle_timeout=None)
        await scheduler
        return scheduler

    def worker_count(self) -> int:
        return len(self._scheduler.workers)

    def workers(self) -> list[tuple[str, str]]:
        """(name, address) of every worker connected now, read on the scheduler's own loop
        (no network round trip, so a busy machine never makes a live worker look gone)."""
        async def read() -> list[tuple[str, str]]:
            return [(str(ws.name), addr) for addr, ws in self._scheduler.workers.items()]

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._scheduler.close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def run_worker(scheduler: str, security: Any, name: str, host: str = "127.0.0.1") -> None:
    """Run a Dask worker (no nanny: the worker is this attested process) until it closes."""
    from distributed import Worker

    worker = Worker(scheduler, security=security, name=name, host=host, protocol="tls", nthreads=1,
                    dashboard=False)
    await worker
    await worker.finished()
