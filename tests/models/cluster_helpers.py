"""Helpers for the cluster tests: a real TLS Dask cluster in-process, and a keyed-hash split.

The cluster is a distributed.LocalCluster whose scheduler and workers speak only tls://
with certificates from a throwaway CA made here (cryptography), require_encryption on,
and no dashboard. Partitions are placed with client.scatter(..., workers=[address]), so
partition i of every party sits on worker i, as the runtime's partitioned ingress does.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from teenet.models import PartyInput
from teenet.models.cluster import ClusterPartyInput
from teenet.models.tables import KeyNormalisation, normalise_key


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_files(folder: Path) -> dict[str, str]:
    """A throwaway CA and one leaf certificate (for loopback) that every cluster member uses."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test cluster CA")).issuer_name(_name("test cluster CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("cluster member")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca": folder / "ca.pem", "cert": folder / "member.pem", "key": folder / "member.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {k: str(v) for k, v in files.items()}


def tls_security(files: dict[str, str]):
    from distributed import Security

    return Security(tls_ca_file=files["ca"], tls_client_cert=files["cert"], tls_client_key=files["key"],
                    tls_scheduler_cert=files["cert"], tls_scheduler_key=files["key"],
                    tls_worker_cert=files["cert"], tls_worker_key=files["key"], require_encryption=True)


def tls_client(folder: Path, workers: int):
    """A Dask LocalCluster of `workers` one-thread workers on TLS only (this folder's test CA),
    and a client of it once every worker registered; yields the client, closes both."""
    from distributed import Client, LocalCluster

    security = tls_security(make_ca_files(folder))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, protocol="tls://",
                           security=security, dashboard_address=None, host="127.0.0.1")
    client = Client(cluster, security=security)
    client.wait_for_workers(workers, timeout=120)  # a loaded machine registers workers late
    assert all(a.startswith("tls://") for a in client.scheduler_info()["workers"])
    yield client
    client.close()
    cluster.close()


def partition_of(table: pa.Table, keys: Sequence[str], norm: KeyNormalisation, parts: int,
                 hash_key: bytes) -> np.ndarray:
    """Per row, its partition: a keyed BLAKE2b of the normalised key tuple, modulo `parts`.

    Null keys go to partition 0 (they never match anything, wherever they are)."""
    columns = [normalise_key(table.column(k), norm, k).to_pylist() for k in keys]
    out = np.zeros(table.num_rows, dtype=np.int64)
    for i, values in enumerate(zip(*columns)):
        if any(v is None for v in values):
            continue
        digest = hashlib.blake2b(repr(values).encode(), key=hash_key, digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") % parts
    return out


def scatter_inputs(client, inputs: Sequence[PartyInput], norm: KeyNormalisation = KeyNormalisation(),
                   hash_key: bytes = b"test partition key") -> list[ClusterPartyInput]:
    """Each input split by the keyed hash and partition i placed on worker i (in address order)."""
    workers = sorted(client.scheduler_info()["workers"])
    result = []
    for inp in inputs:
        where = partition_of(inp.data, inp.keys, norm, len(workers), hash_key)
        futures = []
        for i, address in enumerate(workers):
            part = inp.data.filter(pa.array(where == i))
            futures.append(client.scatter(part, workers=[address], broadcast=False, hash=False))
        result.append(ClusterPartyInput(inp.party, inp.table, inp.keys, inp.columns, tuple(futures)))
    return result
