"""The embedded server's own behaviour: failure reports, clean shutdown, the CLIs end to end."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_client.errors import ServerUnavailableError
from ppo_client.txt2img import Txt2ImgClient
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig, free_port
from ppo_server.errors import EmbeddedServerError
from tests.processes import processes_mentioning

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def test_a_broken_repository_fails_to_start_with_the_log_tail(tmp_path):
    model = tmp_path / "repo" / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: 2\n')
    (model / "1" / "model.py").write_text("raise RuntimeError('this model cannot load')\n")
    server = EmbeddedTritonServer(ServerConfig(tmp_path / "repo", log_file=tmp_path / "triton.log"))
    with pytest.raises(EmbeddedServerError) as info:
        server.start()
    assert "this model cannot load" in str(info.value)
    assert processes_mentioning(str(tmp_path / "repo")) == []


def test_a_missing_repository_is_reported_before_starting(tmp_path):
    with pytest.raises(EmbeddedServerError, match="does not exist"):
        EmbeddedTritonServer(ServerConfig(tmp_path / "nowhere")).start()


def test_the_sdk_reports_an_unreachable_server():
    with Txt2ImgClient(f"127.0.0.1:{free_port()}") as client:
        with pytest.raises(ServerUnavailableError, match="cannot reach"):
            client.generate("a cat")


def test_ppo_client_generate_writes_an_image(triton_server, tmp_path):
    out = tmp_path / "img.png"
    result = subprocess.run(
        [BIN / "ppo-client", "generate", "--prompt", "a red cat", "--seed", "3", "--steps", "3",
         "--guidance", "7.5", "--height", "64", "--width", "64", "--out", out, "--url", triton_server.grpc_url],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_ppo_client_generate_explains_a_bad_field_and_exits_non_zero(triton_server, tmp_path):
    result = subprocess.run(
        [BIN / "ppo-client", "generate", "--prompt", "x", "--steps", "0", "--out", tmp_path / "x.png",
         "--url", triton_server.grpc_url],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "steps: must be an integer from 1 to 200" in result.stderr


def test_ppo_serve_prints_its_urls_and_stops_cleanly_on_sigterm(tiny_repository, tmp_path):
    process = subprocess.Popen(
        [BIN / "ppo-serve", "--repository", tiny_repository, "--http-port", "0", "--grpc-port", "0",
         "--log-file", tmp_path / "serve.log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        grpc_line = process.stdout.readline().strip()
        http_line = process.stdout.readline().strip()
        assert grpc_line.startswith("grpc: 127.0.0.1:") and http_line.startswith("http: http://127.0.0.1:")
        with Txt2ImgClient(grpc_line.split(" ", 1)[1]) as client:
            assert client.generate("a cat", steps=2).size == (64, 64)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # closes its pipes
    grpc_port = grpc_line.rsplit(":", 1)[1]
    assert processes_mentioning(f"--grpc-port={grpc_port} ") == []
