"""`log_format: json`: one JSON object per log line, with the job id when the line is about a job.

Decides the line's fields: time (UTC, ISO 8601), level, logger, message, and `job_id`, the
job a line is about, taken from a `job_id` passed in `extra` or else from the message
("job 3f2a…"), null on lines about no job. Secrets are not its business: the code never
logs one (the console token is never logged, only the path of its file).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

_JOB = re.compile(r"\bjob ([0-9a-f]{12,64})")


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        job_id = getattr(record, "job_id", None)
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
