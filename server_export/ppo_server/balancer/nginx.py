"""nginx run as a child process from a prefix folder of its own, in front of Triton replicas.

``nginx -p PREFIX -c nginx.conf -e error.log``: the configuration, pid file, logs and temporary
files all live in PREFIX, so it runs as any user on any free ports. It is a standard load balancer:
nothing here is needed to run the same configuration under a system nginx or another manager.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ppo_client.processes import check_alive, free_port, stop_process_group, wait_http_ready
from ppo_server.balancer.config import CONFIG_NAME, ERROR_LOG_NAME, BalancerConfig, render
from ppo_server.errors import BalancerError

logger = logging.getLogger(__name__)

SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")
"""Where nginx is when it is not on ``PATH`` (Debian puts it in /usr/sbin, often off a user's PATH)."""
INSTALL_HINT = "install it (Debian or Ubuntu: apt-get install nginx) or pass its path"
STARTUP_TIMEOUT_S = 180.0
"""How long to wait for Triton's readiness through nginx (replicas started at the same time take a while)."""
SHUTDOWN_TIMEOUT_S = 10.0


def find_nginx(binary: str | os.PathLike | None = None) -> Path:
    """The nginx binary: ``binary`` if given, else ``nginx`` on ``PATH`` or in the usual sbin folders."""
    if binary is not None:
        path = Path(binary)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BalancerError(f"{path} is not an executable nginx; {INSTALL_HINT}")
        return path
    search = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_PATH])
    found = shutil.which("nginx", path=search)
    if found is None:
        raise BalancerError(f"nginx was not found; {INSTALL_HINT}")
    return Path(found)


class NginxBalancer:
    """``with NginxBalancer(BalancerConfig(replicas)) as balancer: balancer.grpc_url``.

    Ports given as 0 are picked free on start. The prefix folder is temporary and removed on stop
    unless one is given (then the configuration and logs stay there)."""

    def __init__(self, config: BalancerConfig, *, prefix: Path | None = None, binary: str | os.PathLike | None = None,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.binary = find_nginx(binary)
        self.config = config
        self.prefix = Path(prefix).resolve() if prefix is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self._own_prefix = False

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.config.host}:{self.config.http_port}"

    @property
    def error_log(self) -> Path:
        return Path(self.prefix or ".") / ERROR_LOG_NAME

    def command(self) -> list[str]:
        return [str(self.binary), "-p", f"{self.prefix}/", "-c", CONFIG_NAME, "-e", ERROR_LOG_NAME]

    def write_config(self) -> Path:
        """Pick free ports, make the prefix folder and write the configuration into it."""
        ports: dict[str, Any] = {}
        for name in ("grpc_port", "http_port"):
            if getattr(self.config, name) == 0:
                ports[name] = free_port(self.config.host)
        if ports:
            self.config = replace(self.config, **ports)
        if self.prefix is None:
            self.prefix = Path(tempfile.mkdtemp(prefix="ppo-nginx-"))
            self._own_prefix = True
        self.prefix.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Run as root, nginx's workers drop to an unprivileged user: they must reach their
            # temporary folders inside the prefix (nginx makes those and hands them to that user).
            self.prefix.chmod(0o755)
        (self.prefix / CONFIG_NAME).write_text(render(self.config))
        return self.prefix

    def check_config(self) -> None:
        """``nginx -t``: raise ``BalancerError`` with nginx's own words if it refuses the configuration."""
        done = subprocess.run([*self.command(), "-t", "-q"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise BalancerError(f"nginx refused {Path(self.prefix or '.') / CONFIG_NAME}:\n{(done.stderr or done.stdout).strip()}")

    def start(self) -> NginxBalancer:
        prefix = self.write_config()
        try:
            self.check_config()
            log = open(prefix / "nginx.stderr", "wb")
            with log:
                self.process = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its workers join this group, so stop() ends them too
                )
            logger.info("started nginx (pid %d) in %s", self.process.pid, self.prefix)
            # Triton's readiness through nginx: the balancer listens and reaches a ready replica.
            wait_http_ready(self.process, f"{self.http_url}/v2/health/ready", timeout_s=self.startup_timeout_s,
                            log_file=self.error_log, name="nginx", error=BalancerError)
        except BaseException:
            self.stop()
            raise
        logger.info("nginx ready: grpc %s, http %s", self.grpc_url, self.http_url)
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Raise ``BalancerError`` with the exit status and error log's tail if nginx has died."""
        check_alive(self.process, name="nginx", log_file=self.error_log, error=BalancerError)

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown), then SIGKILL the group; remove a temporary prefix."""
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, timeout_s=SHUTDOWN_TIMEOUT_S, name="nginx")
        if self._own_prefix and self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix, self._own_prefix = None, False

    def __enter__(self) -> NginxBalancer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
