"""Processing time for timers that fire when nothing happens (DESIGN decision 1).

The wall clock, unless a clock file is configured (tests and replays): then the instant written
in that file, so a test can freeze time and move it forward without restarting a worker.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from streams.validate import utc_now


class Clock:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._mtime: int | None = None
        self._value = 0.0

    def now(self) -> float:
        if self.path is None:
            return utc_now().timestamp()
        mtime = self.path.stat().st_mtime_ns
        if mtime != self._mtime:
            instant = datetime.fromisoformat(self.path.read_text(encoding="utf-8").strip())
            if instant.tzinfo is None:
                raise ValueError(f"{self.path}: the instant needs a UTC offset")
            self._value, self._mtime = instant.timestamp(), mtime
        return self._value
