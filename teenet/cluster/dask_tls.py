"""The leader's Dask scheduler and a worker's Dask worker, on leader-issued TLS only.

Dask's TLS is mutual: with `require_encryption=True` and the cluster CA as the only trust
anchor, a peer without a certificate from this leader's in-memory CA cannot complete the
handshake, so Dask's pickled messages come only from admitted, attested peers of this one
cluster (docs/threat-model.md). No HTTP route is served (and its listener is on loopback), nothing spills to disk (HARDENED). dask/distributed are imported here,
lazily, never at CLI start.

The keys and certificates ssl, Dask and XGBoost's C++ communicator read "from a file" are
anonymous memory (`memfd_create`), never on disk: see private_files.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import ssl
import threading
from typing import Any, Iterable, Mapping

from teenet.cluster.ca import ClusterCA, cert_pem, key_pem, new_key

log = logging.getLogger("teenet.cluster.tls")
_MEMFDS: dict[str, int] = {}   # path -> open memfd, kept for the process lifetime (or release)
_MEMFD_LOCK = threading.Lock()
_SEALS = ("F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE")


def private_files(files: Mapping[str, bytes]) -> tuple[str, ...]:
    """Each of `files` (name -> bytes) as a path that ssl, distributed.Security and XGBoost's
    C++ code can open, backed by anonymous memory only: a sealed `memfd_create` file (no
    name in any file system, never written to disk), opened through /proc/<pid>/fd/<n> with
    the pid of this process, so a child process would still reach the same memory while this
    process lives (a /proc/self path would mean the child's own fds; memfds are close-on-exec).
    The fds stay open for the process lifetime, or until `release(paths)`.

    Where memfd_create or /proc does not exist (not Linux) this fails closed: a cluster's
    keys are never written to a file system."""
    try:
        return tuple(_memfd(name, data) for name, data in files.items())
    except _NoMemfd as exc:
        from teenet.errors import InputError

        raise InputError(f"cluster keys and certificates must stay in memory, and this system has no "
                         f"memory-only files ({exc}); compute clusters need Linux (memfd_create and /proc)") from None


class _NoMemfd(Exception):
    pass


def _memfd(name: str, data: bytes) -> str:
    if not hasattr(os, "memfd_create"):
        raise _NoMemfd("os.memfd_create is missing")
    fd = os.memfd_create(f"teenet-{name}", os.MFD_CLOEXEC | getattr(os, "MFD_ALLOW_SEALING", 0))
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        seals = 0
        for seal in _SEALS:  # no one may change, grow or shrink it from now on
            seals |= getattr(fcntl, seal, 0)
        if seals and hasattr(fcntl, "F_ADD_SEALS"):
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        path = f"/proc/{os.getpid()}/fd/{fd}"
        try:
            with open(path, "rb") as check:  # what OpenSSL and XGBoost will do: open the path
                if check.read(len(data) + 1) != data:
                    raise _NoMemfd(f"{path} does not read back what was written")
        except OSError as exc:
            raise _NoMemfd(f"cannot open {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    with _MEMFD_LOCK:
        _MEMFDS[path] = fd
    return path


def release(paths: Iterable[str]) -> None:
    """Close the memfds behind `paths` (their memory is freed once nothing else holds them)."""
    for path in paths:
        with _MEMFD_LOCK:
            fd = _MEMFDS.pop(path, None)
        if fd is not None:
            os.close(fd)


# Dask settings every leader and worker process runs with:
# - no HTTP routes: `dashboard=False` turns off only the Bokeh dashboard; distributed still
#   serves /info (workers, task sizes, logs), /json, /eventstream (every task's result size)
#   and /metrics over plain HTTP with no login. With no routes every path is a 404, and the
#   listener is on loopback only (LOOPBACK_HTTP), never on the cluster's interface.
# - no spilling: a worker's memory manager would pickle held partitions (opened tables,
#   joined rows) to plaintext files under its local directory past 60% of memory. A worker
#   that runs out of memory fails its job instead; its data never reaches the disk.
HARDENED: dict[str, Any] = {
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
}
LOOPBACK_HTTP = "127.0.0.1:0"


def security_for(ca_pem: bytes, cert: bytes, key: bytes) -> Any:
    """A distributed.Security trusting only `ca_pem`, presenting cert/key in every role. It is
    given memfd paths (private_files), not PEM contents: with contents, Security writes them
    to a tempfile.TemporaryDirectory on disk at every connection."""
    from distributed import Security

    ca_file, cert_file, key_file = private_files({"ca.pem": ca_pem, "cert.pem": cert, "key.pem": key})
    return Security(tls_ca_file=ca_file, tls_client_cert=cert_file, tls_client_key=key_file,
                    tls_scheduler_cert=cert_file, tls_scheduler_key=key_file,
                    tls_worker_cert=cert_file, tls_worker_key=key_file, require_encryption=True,
                    tls_min_version=ssl.TLSVersion.TLSv1_3)


def leader_security(ca: ClusterCA, name: str = "leader") -> Any:
    key = new_key()
    cert = ca.issue(name, key.public_key(), hosts=("127.0.0.1",))
    return security_for(cert_pem(ca.certificate), cert_pem(cert), key_pem(key))


class LeaderScheduler:
    """A distributed.Scheduler running on its own event loop thread inside the leader."""

    def __init__(self, ca: ClusterCA, *, host: str = "127.0.0.1", port: int = 0, worker_ttl: int = 30) -> None:
        self.security = leader_security(ca)
        self._worker_ttl = worker_ttl
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
        # A worker silent for worker_ttl seconds (frozen, or cut off from the leader) is
        # dropped, so its jobs fail with cluster.worker_lost instead of hanging for Dask's
        # default of 5 minutes.
        dask.config.set({**HARDENED, "distributed.scheduler.work-stealing": False,
                         "distributed.scheduler.worker-ttl": f"{self._worker_ttl}s"})
        scheduler = Scheduler(host=host, port=port, protocol="tls", security=self.security,
                              dashboard=False, dashboard_address=LOOPBACK_HTTP, idle_timeout=None)
        await scheduler
        return scheduler

    def worker_count(self) -> int:
        return len(self._scheduler.workers)

    def workers(self) -> list[tuple[str, str]]:
        """(name, address) of every worker connected now, read on the scheduler's own loop
        (no network round trip, so a busy machine never makes a live worker look gone)."""
        return [(name, addr) for name, addr, _ in self.connected()]

    def connected(self) -> list[tuple[str, str, int | None]]:
        """(name, address, serial) of every worker connected now: serial is the serial number
        of the certificate the worker presented on its TLS connection to the scheduler (None
        while its stream is not yet up), which tells one admission of a name from another."""
        async def read() -> list[tuple[str, str, int | None]]:
            out = []
            for addr, ws in self._scheduler.workers.items():
                out.append((str(ws.name), addr, _peer_serial(self._scheduler.stream_comms.get(addr))))
            return out

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(30)

    def remove(self, address: str, why: str) -> None:
        """Close the worker at `address` and drop it from the scheduler (its tasks fail over
        as for any lost worker)."""
        async def remove() -> None:
            if address in self._scheduler.workers:
                await self._scheduler.remove_worker(address, stimulus_id=f"teenet-{why}", close=True)

        asyncio.run_coroutine_threadsafe(remove(), self._loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._scheduler.close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _peer_serial(stream: Any) -> int | None:
    """The serial number of the peer certificate on a BatchedSend's TLS comm, or None."""
    comm = getattr(stream, "comm", None)
    info = getattr(comm, "extra_info", None) or {}
    serial = (info.get("peercert") or {}).get("serialNumber")
    try:
        return int(serial, 16) if isinstance(serial, str) else None
    except ValueError:
        return None


def make_worker(scheduler: str, security: Any, name: str, host: str = "127.0.0.1") -> Any:
    """A Dask worker (no nanny: the worker is this attested process), hardened (HARDENED)."""
    import dask
    from distributed import Worker

    dask.config.set(HARDENED)
    return Worker(scheduler, security=security, name=name, host=host, protocol="tls", nthreads=1,
                  dashboard=False, dashboard_address=LOOPBACK_HTTP)


async def run_worker(scheduler: str, security: Any, name: str, host: str = "127.0.0.1") -> None:
    """Run a hardened Dask worker until the scheduler closes it."""
    # A failed task's record ("Compute Failed": its arguments, exception text and traceback)
    # and any traceback Dask's worker logs may quote cell values: they stay out of its log.
    logging.getLogger("distributed.worker").addFilter(
        lambda r: not (str(r.msg).startswith("Compute Failed") or r.exc_info))
    worker = make_worker(scheduler, security, name, host)
    await worker
    await worker.finished()
