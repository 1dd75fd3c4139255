"""Which jobs a recipient may open results of: the analyst's record of its own submissions,
or the jobs a data owner's node approved.

`teenet job submit` writes the job id (the spec digest) to `<config>.submitted.jsonl`,
next to the analyst's config, durably and before the job leaves for the coordinator, so a
crash in between leaves a record of a job that may exist rather than a job with none.
`teenet job result` opens a job's results only when the job is in that record, or, run
with a node's config, when that node approved it: the signed statement of every result
names the job's spec digest, and this is the spec the recipient vouches for. It does not
decide what a result contains or whether it verifies (teenet.node.results does).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from teenet.errors import TeenetError


def record_path(config: Path) -> Path:
    return config.with_name(config.name + ".submitted.jsonl")


def record_submission(config: Path, job_id: str, name: str) -> Path:
    """Append one submitted job to the record; on disk (fsynced) when this returns."""
    path = record_path(config)
    line = json.dumps({"job_id": job_id, "name": name, "submitted_at": round(time.time(), 3)}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def submitted_jobs(config: Path) -> set[str]:
    path = record_path(config)
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text().splitlines():
        try:
            out.add(str(json.loads(line)["job_id"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash mid-write names no job
    return out


def check_analyst_submitted(config: Path, job_id: str) -> None:
    if job_id not in submitted_jobs(config):
        raise TeenetError(f"job {job_id[:12]} is not one you submitted: it is not in {record_path(config)} "
                          "(the record `teenet job submit` keeps); its results are not opened")


def check_owner_approved(state_db: Path, party: str, job_id: str) -> None:
    from teenet.approval import Decision
    from teenet.node.store import NodeStore

    if not state_db.exists():
        raise TeenetError(f"{party}'s node has no state ({state_db}); it approved no job, so no results are opened")
    store = NodeStore(state_db)
    try:
        own = store.decision(job_id, party)
    finally:
        store.close()
    if own is None or not Decision.from_canonical(own.decision).approved:
        raise TeenetError(f"job {job_id[:12]} is not one {party}'s node approved; its results are not opened")
