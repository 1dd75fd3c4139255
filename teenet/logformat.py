"""`log_format: json`: one JSON object per log line, with the job id when the line is about a job.

Decides the line's fields: time (UTC, ISO 8601), level, logger, message, and `job_id`, the
job a line is about: a `job_id` passed in `extra`, else the job whose work item the thread
is handling (`job_context`, set by the daemon), else the id the message names ("job
3f2a…", the 16-character prefix the roles log), null on lines about no job. Secrets are not its business: the code never
logs one (the console token is never logged, only the path of its file).
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterator

_JOB = re.compile(r"\bjob ([0-9a-f]{12,64})")
_CURRENT_JOB: ContextVar[str | None] = ContextVar("teenet_job_id", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every line logged inside this block (in this thread) names `job_id`."""
    token = _CURRENT_JOB.set(job_id)
    try:
        yield
    finally:
        _CURRENT_JOB.reset(token)


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        job_id = getattr(record, "job_id", None) or _CURRENT_JOB.get()
        if job_id is None:
            found = _JOB.search(message)
            job_id = found.group(1) if found else None
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": message, "job_id": job_id}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def use_log_format(log_format: str) -> None:
    """Switch every handler of the root logger to `log_format` (text leaves them as they are)."""
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING)
    for handler in root.handlers:
        handler.setFormatter(JsonLineFormatter())
