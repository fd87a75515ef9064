"""The real Triton server binary from the nvidia-pytriton wheel, run as a child process.

What the wheel needs to run outside PyTriton (see the README's "Embedded server"): its bundled
libraries (and this interpreter's libpython) on ``LD_LIBRARY_PATH``; a backend folder in which the python backend's stub for this
interpreter sits next to ``libtriton_python.so``; and this virtualenv's ``bin/`` first on ``PATH``,
because the stub finds its packages (numpy<2, onnxruntime, the project) from there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ppo_client.processes import check_alive, free_port, log_path, stop_process_group, wait_http_ready
from ppo_server.cache import cache_dir
from ppo_server.errors import EmbeddedServerError

logger = logging.getLogger(__name__)
# Read once, at import: sysconfig fills its cache on first use without a lock, so servers started
# from several threads at once could read it half-filled (None) and load another libpython.
_PYTHON_LIBRARY = (sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME"))

DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001


@dataclass(frozen=True)
class ServerConfig:
    repository: Path
    http_port: int = 0
    """0 picks a free port."""
    grpc_port: int = 0
    host: str = "127.0.0.1"
    log_file: Path | None = None
    """Where the server's log goes; a temporary file when not given."""
    startup_timeout_s: float = 180.0
    shutdown_timeout_s: float = 30.0
    log_verbose: int = 0
    cpus: tuple[int, ...] = ()
    """Pin the server and its python-backend processes to these CPU cores (empty: no pinning)."""


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    libraries: Path
    python_backend: Path
    stub: Path

    @classmethod
    def find(cls) -> TritonInstall:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedServerError(
                "the embedded server needs the nvidia-pytriton wheel: pip install 'nvidia-pytriton' (numpy<2)"
            )
        package = Path(list(spec.submodule_search_locations)[0])
        root = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        install = cls(
            binary=root / "bin" / "tritonserver",
            libraries=package.parent / "nvidia_pytriton.libs",
            python_backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        )
        for path in (install.binary, install.libraries, install.python_backend, install.stub):
            if not path.exists():
                raise EmbeddedServerError(f"the nvidia-pytriton install lacks {path} (Python {version} supported?)")
        return install

    def backend_directory(self) -> Path:
        """A private backend folder with this interpreter's stub, built once and reused."""
        cache = cache_dir("triton-backends")
        key = f"py{sys.version_info.major}{sys.version_info.minor}-{self.binary.stat().st_mtime_ns}"
        target = cache / key
        if (target / "python" / "triton_python_backend_stub").exists():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache))
        (staging / "python").mkdir()
        for item in self.python_backend.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / "python" / item.name)
        shutil.copy2(self.stub, staging / "python" / "triton_python_backend_stub")
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
        return target


class EmbeddedTritonServer:
    """Start with ``with EmbeddedTritonServer(ServerConfig(repo)) as server: server.grpc_url``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.process: subprocess.Popen | None = None
        self.http_port = config.http_port or free_port(config.host)
        self.grpc_port = config.grpc_port or free_port(config.host)
        self.log_file = log_path(config.log_file, "ppo-triton-")

    @property
    def http_url(self) -> str:
        return f"http://{self.config.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.grpc_port}"

    def command(self, install: TritonInstall) -> list[str]:
        return [
            str(install.binary),
            f"--model-repository={Path(self.config.repository).resolve()}",
            f"--backend-directory={install.backend_directory()}",
            f"--http-address={self.config.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.config.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=10",
            f"--log-verbose={self.config.log_verbose}",
        ]

    def environment(self, install: TritonInstall) -> dict[str, str]:
        env = dict(os.environ)
        libraries = [str(install.libraries)]
        # The stub links libpython dynamically: make it find this interpreter's own, not another
        # patch release whose symbols this interpreter's stdlib extension modules do not match.
        libdir, soname = _PYTHON_LIBRARY
        if libdir and soname and (Path(libdir) / soname).exists():
            libraries.insert(0, libdir)
        if env.get("LD_LIBRARY_PATH"):
            libraries.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self) -> EmbeddedTritonServer:
        repository = Path(self.config.repository)
        if not repository.is_dir():
            raise EmbeddedServerError(f"model repository {repository} does not exist; run `ppo-export` first")
        install = TritonInstall.find()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                self.command(install),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(install),
                start_new_session=True,  # stubs join this group, so stop() can end them all
                preexec_fn=(lambda: os.sched_setaffinity(0, self.config.cpus)) if self.config.cpus else None,
            )
        logger.info("started tritonserver (pid %d), log %s", self.process.pid, self.log_file)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        wait_http_ready(
            self.process, f"{self.http_url}/v2/health/ready", timeout_s=self.config.startup_timeout_s,
            log_file=self.log_file, name="tritonserver", error=EmbeddedServerError,
        )
        logger.info("tritonserver ready: http %s, grpc %s", self.http_url, self.grpc_url)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Raise ``EmbeddedServerError`` with the exit status and log tail if the server has died."""
        check_alive(self.process, name="tritonserver", log_file=self.log_file, error=EmbeddedServerError)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL the whole process group (server and python stubs)."""
        process, self.process = self.process, None
        if process is None:
            return
        stop_process_group(process, timeout_s=self.config.shutdown_timeout_s, name="tritonserver")

    def __enter__(self) -> EmbeddedTritonServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
