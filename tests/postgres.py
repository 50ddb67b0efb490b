"""The PostgreSQL server of a test session (and of bench/ingest.py), like tests/mosquitto.py for brokers.

Which server, decided once per session by ``session_server()``:

* ``STEMPEL_TEST_PG=<libpq DSN>`` — that server and no other; unreachable is an error.
* ``STEMPEL_TEST_PG=private`` — a private throwaway cluster, even when 127.0.0.1:5432 answers.
* unset — the server at 127.0.0.1:5432 (trust auth, user ``postgres``, database ``test``) when it
  answers, else a private cluster.

A private cluster is ``initdb`` + ``pg_ctl`` in a temp dir: trust auth, listening on 127.0.0.1 on a
free port, its unix socket in the same dir, so it never meets the machine's own cluster. It is
stopped and removed when the session ends, and a cluster left by a session that was killed is
removed by the next one. initdb and postgres refuse to run as root (CI containers), so as root
they run as ``postgres`` (made by Debian's package) or ``nobody``. The binaries come from PATH or
Debian's ``/usr/lib/postgresql/<version>/bin``, which ``scripts/system-deps.sh`` installs.
A server that is missing and cannot be started raises ``PostgresUnavailable`` naming the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.engine import URL

from cloud.devbroker import free_port

log = logging.getLogger(__name__)

ENV = "STEMPEL_TEST_PG"
PRIVATE = "private"
DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
CONNECT_TIMEOUT = 5
PREFIX = "stempel-pg-"
FIX = ("install PostgreSQL's server binaries (`make test` does: scripts/system-deps.sh installs Debian's "
       "`postgresql`), or set STEMPEL_TEST_PG to the DSN of a server where user postgres may create databases")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL for the tests: none reachable, and no private cluster could be started."""


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server reached as a user who may create databases.

    ``params`` are libpq keywords without ``dbname``; ``admin_db`` is the database to connect
    to for CREATE/DROP DATABASE; ``label`` says which server this is, for reports.
    """

    params: dict[str, str]
    admin_db: str
    label: str

    @classmethod
    def from_dsn(cls, dsn: str, label: str) -> "Server":
        params = conninfo_to_dict(dsn)
        params.pop("connect_timeout", None)
        return cls(params, params.pop("dbname", None) or "postgres", label)

    def dsn(self, dbname: str | None = None) -> str:
        """A libpq conninfo string for *dbname* (default: the admin database)."""
        return make_conninfo(**self.params, dbname=dbname or self.admin_db, connect_timeout=CONNECT_TIMEOUT)

    def url(self, dbname: str) -> str:
        """A SQLAlchemy URL for *dbname*; a socket directory or other libpq keywords go in the query."""
        rest = {k: str(v) for k, v in self.params.items() if k not in ("user", "password", "host", "port")}
        host = self.params.get("host")
        if host and host.startswith("/"):
            rest["host"], host = host, None
        port = self.params.get("port")
        return URL.create("postgresql+psycopg", username=self.params.get("user"), password=self.params.get("password"),
                          host=host, port=int(port) if port else None, database=dbname,
                          query=rest).render_as_string(hide_password=False)


def probe(dsn: str) -> str | None:
    """None if *dsn* answers a query, else why not (one line)."""
    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


@contextlib.contextmanager
def session_server(choice: str | None = None) -> Iterator[Server]:
    """The server chosen by *choice* (default: ``$STEMPEL_TEST_PG``), see the module docstring.

    A private cluster lives as long as the ``with`` block. Raises PostgresUnavailable.
    """
    choice = (os.environ.get(ENV, "") if choice is None else choice).strip()
    if choice and choice != PRIVATE:
        if (error := probe(choice)) is not None:
            raise PostgresUnavailable(f"PostgreSQL at {ENV}={choice!r} is not reachable: {error}\n"
                                      f"Fix the DSN, or unset {ENV} to use 127.0.0.1:5432 or a private cluster.")
        yield Server.from_dsn(choice, label=f"{ENV}={choice}")
        return
    why = f"{ENV}={PRIVATE}"
    if not choice:
        if (error := probe(DEFAULT_DSN)) is None:
            yield Server.from_dsn(DEFAULT_DSN, label="127.0.0.1:5432")
            return
        why = f"127.0.0.1:5432: {error}"
    with PrivateCluster(reason=why) as server:
        yield server


def bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: PATH first, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)] or [0])
    if versions:
        return versions[-1].parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
                              "/usr/lib/postgresql/*/bin")


class PrivateCluster:
    """A throwaway cluster in a temp dir; a context manager that starts and removes it."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        self.root: Path | None = None
        self.port = 0

    def __enter__(self) -> Server:
        try:
            return self.start()
        except (OSError, subprocess.SubprocessError, PostgresUnavailable) as exc:
            raise PostgresUnavailable(f"No PostgreSQL for the tests ({self.reason}), and no private cluster "
                                      f"could be started: {exc}\nFix: {FIX}.") from None

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def data(self) -> Path:
        return Path(self.root or "") / "data"

    def start(self, attempts: int = 3) -> Server:
        """initdb, then pg_ctl start on a free port (another on a lost race for it)."""
        bins = bindir()
        sweep_stale()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=_temp_parent()))
        try:
            (self.root / "owner.pid").write_text(f"{os.getpid()}\n")
            _hand_over(self.root)
            self._run(bins / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C.UTF-8", "--no-sync")
            self._configure()
            for attempt in range(attempts):
                self.port = free_port()
                try:
                    self._run(bins / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "-t", "60",
                              "-o", f"-p {self.port}", "start")
                    break
                except subprocess.CalledProcessError:
                    if attempt == attempts - 1 or "already in use" not in self.log_tail():
                        raise
        except BaseException as exc:
            tail = self.log_tail()
            self.stop()
            if isinstance(exc, subprocess.CalledProcessError):
                raise PostgresUnavailable(f"{' '.join(map(str, exc.cmd))} failed: "
                                          f"{(exc.stderr or exc.stdout or '').strip()} {tail}") from None
            raise
        version = subprocess.run([bins / "pg_ctl", "--version"], capture_output=True, text=True).stdout
        version = version.strip().removeprefix("pg_ctl (PostgreSQL) ")
        log.info("pg.private_started", extra={"dir": str(self.root), "port": self.port, "reason": self.reason})
        return Server({"host": "127.0.0.1", "port": str(self.port), "user": "postgres"}, "postgres",
                      label=f"private cluster (PostgreSQL {version}, 127.0.0.1:{self.port}, {self.root}; {self.reason})")

    def _configure(self) -> None:
        """Only 127.0.0.1 and a socket in our own dir: never the machine's port or /var/run/postgresql."""
        socket_dir = str(self.root).replace("'", "''")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\n# stempel tests\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket_dir}'\n")

    def _run(self, *cmd) -> subprocess.CompletedProcess:
        return subprocess.run(_as_owner([str(c) for c in cmd]), cwd=self.root, capture_output=True, text=True,
                              timeout=120, check=True, stdin=subprocess.DEVNULL)

    def log_tail(self) -> str:
        server_log = self.root / "server.log" if self.root else None
        return server_log.read_text(errors="replace")[-1500:] if server_log and server_log.exists() else ""

    def stop(self) -> None:
        """Stop the server (immediate: nothing in it is kept) and remove its directory. Idempotent."""
        if self.root is None:
            return
        root, self.root = self.root, None
        _stop_cluster(root)
        log.info("pg.private_removed", extra={"dir": str(root)})


def _stop_cluster(root: Path) -> None:
    pid_file = root / "data" / "postmaster.pid"
    if pid_file.exists():
        try:
            subprocess.run(_as_owner([str(bindir() / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                                      "-w", "-t", "30", "stop"]),
                           cwd=root, capture_output=True, timeout=60, check=True, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError, PostgresUnavailable):
            _kill_postmaster(pid_file)
    shutil.rmtree(root, ignore_errors=True)


def _kill_postmaster(pid_file: Path) -> None:
    """Last resort: SIGKILL the postmaster (its backends exit when it dies) and wait for it."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)


def sweep_stale() -> None:
    """Remove private clusters whose test session died without cleaning up (SIGKILL, power cut)."""
    for root in Path(_temp_parent()).glob(f"{PREFIX}*"):
        with contextlib.suppress(OSError, ValueError):
            owner = int((root / "owner.pid").read_text())
            if not Path(f"/proc/{owner}").exists():
                log.info("pg.private_stale", extra={"dir": str(root), "owner": owner})
                _stop_cluster(root)


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account initdb and postgres run as when we are root, else None (run as we are)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root, and there is no `postgres` or `nobody` account to run initdb as")


def _as_owner(cmd: list[str]) -> list[str]:
    account = _run_as()
    if account is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", account.pw_name, "--", *cmd]
    return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", *cmd]


def _hand_over(root: Path) -> None:
    account = _run_as()
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)


def _temp_parent() -> str:
    """The temp dir, or /tmp when we are root and the unprivileged account could not reach it."""
    base = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() == 0 and not all(p.stat().st_mode & stat.S_IXOTH for p in (base, *base.parents)):
        return "/tmp"
    return str(base)
