"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` in a temporary folder, on a free
loopback port, as an unprivileged user where the tests run as root (PostgreSQL refuses root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL_HINT = "no PostgreSQL server binaries found (initdb, pg_ctl); install them with `apt-get install postgresql`"


def binaries() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:  # Debian keeps the server binaries here, off the PATH
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """``start()``, then ``new_database()`` for a URL per test; ``stop()`` removes everything."""

    def __init__(self) -> None:
        self.bin = binaries()
        if self.bin is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.folder = Path(tempfile.mkdtemp(prefix="ppo-pg-"))
        self.port = _free_port()
        self.user = "ppo"
        self.password = "ppo-test-" + uuid.uuid4().hex[:8]
        self._as = []
        if os.geteuid() == 0:
            self._owner = "postgres" if _has_user("postgres") else "nobody"
            shutil.chown(self.folder, self._owner)
            os.chmod(self.folder, 0o700)
            self._as = ["runuser", "-u", self._owner, "--"]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as, *args], capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> PostgresServer:
        data = self.folder / "data"
        secret = self.folder / "pw"
        secret.write_text(self.password + "\n")
        if self._as:
            shutil.chown(secret, self._owner)
        # passwords over TCP (so a wrong one is refused, as on a real server), trust on the local socket
        self._run(str(self.bin / "initdb"), "-D", str(data), "--auth-host=scram-sha-256", "--auth-local=trust",
                  "-U", self.user, f"--pwfile={secret}", "--no-sync")
        secret.unlink()
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        return self

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{self.user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=database,
                             autocommit=True) as db:
            cursor = db.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
