"""Compute clusters (issue 12, runtime half): a leader compute node and N attested workers.

`config` reads a compute-worker's node config; `admission` verifies a worker's evidence
and the leader's (mutual attestation over TLS); `ca` is the leader's in-memory cluster CA;
`ratls` puts evidence in an X.509 extension (OID 2.23.133.5.4.9); `dask_tls` runs the
leader's Dask scheduler and a worker on leader-issued certificates only. dask/distributed
are imported lazily, inside the functions that need them.
"""
