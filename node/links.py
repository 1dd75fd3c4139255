"""The node's outbound links: to the coordinator and to compute nodes, over mutual TLS.

Calls that change state are retried with backoff while the peer is unreachable (the
coordinator may restart at any time); a refusal by the peer is not retried.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import grpc

from teenet.pki import COORDINATOR_GRPC_OPTIONS, TlsFiles, secure_channel
from teenet.proto import teenet_pb2_grpc as rpc

log = logging.getLogger("teenet.node.links")
T = TypeVar("T")

# RESOURCE_EXHAUSTED is not retried: a message over the peer's size limit never gets smaller.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class CoordinatorLink:
    def __init__(self, endpoint: str, tls: TlsFiles, server_name: str) -> None:
        self.endpoint = endpoint
        self.channel = secure_channel(endpoint, tls, server_name=server_name, options=COORDINATOR_GRPC_OPTIONS)
        self.stub = rpc.CoordinatorStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def call_with_retry(fn: Callable[[], T], *, what: str, stop: Callable[[], bool], attempts: int = 0,
                    max_delay: float = 2.0) -> T | None:
    """Call `fn` until it succeeds, the peer refuses (raised), or `stop()`; `attempts=0` is unbounded."""
    delay, n = 0.1, 0
    while not stop():
        try:
            return fn()
        except grpc.RpcError as exc:
            if exc.code() not in RETRYABLE:
                raise
            n += 1
            if attempts and n >= attempts:
                raise
            log.info("%s: peer unavailable (%s); retrying", what, exc.code().name)
            time.sleep(delay)
            delay = min(max_delay, delay * 2)
    return None
