"""One error base for Pulse; every message says what to do about it."""

from __future__ import annotations


class PulseError(Exception):
    """Base of every error Pulse raises on purpose."""


class PlanError(PulseError):
    """A tracking plan file is invalid: the message names the file, line and problem."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


class ServiceError(PulseError):
    """An embedded or external service could not be started or reached."""


class ConfigError(PulseError):
    """Settings are missing or inconsistent."""
