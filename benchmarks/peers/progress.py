"""How a peer process reports progress to the harness: a small JSON file, replaced atomically,
with the wall-clock time of its first and latest processed record and the count so far."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

EVERY = 1000


class Progress:
    def __init__(self, path: str, expect: int) -> None:
        self.path = Path(path)
        self.expect = expect
        self.count = 0
        self.first = 0.0

    def tick(self) -> bool:
        """Count one processed record; True once the expected number is reached."""
        now = time.time()
        if not self.count:
            self.first = now
        self.count += 1
        done = self.count >= self.expect
        if done or self.count % EVERY == 0 or self.count == 1:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"first": self.first, "last": now,
                                          "count": self.count, "pid": os.getpid()}))
            os.replace(tmp, self.path)
        return done
