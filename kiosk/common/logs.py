"""Structured logging: one JSON object per line on stderr, quiet (WARNING) by default."""

from __future__ import annotations

import json
import logging

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"t": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
               "logger": record.name, "event": record.getMessage()}
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup(verbosity: int = 0) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, handlers=[handler], force=True)
