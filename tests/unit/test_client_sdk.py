import subprocess
import sys

import pytest

from ppo_client.errors import InferenceError, ModelNotFoundError, ServerUnavailableError
from ppo_client.triton import Endpoint, map_error


@pytest.mark.parametrize(
    ("url", "protocol", "address"),
    [
        ("localhost:8001", "grpc", "localhost:8001"),
        ("grpc://10.0.0.1:9001", "grpc", "10.0.0.1:9001"),
        ("http://localhost:8000/", "http", "localhost:8000"),
    ],
)
def test_urls_choose_the_protocol(url, protocol, address):
    endpoint = Endpoint.parse(url)
    assert (endpoint.protocol, endpoint.address) == (protocol, address)


def test_an_unknown_url_scheme_is_refused():
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        Endpoint.parse("ftp://host:1")


class _FakeTritonError(Exception):
    def __init__(self, message, status=None):
        super().__init__(message)
        self._message, self._status = message, status

    def message(self):
        return self._message

    def status(self):
        return self._status


def test_server_errors_keep_the_server_message():
    error = map_error(_FakeTritonError("STEPS: must be between 1 and 200, got 0"), model="txt2img", url="u")
    assert isinstance(error, InferenceError)
    assert error.server_message == "STEPS: must be between 1 and 200, got 0"


def test_connection_and_unknown_model_errors_get_their_own_types():
    refused = _FakeTritonError("failed to connect to all addresses", "StatusCode.UNAVAILABLE")
    assert isinstance(map_error(refused, model="m", url="u"), ServerUnavailableError)
    unknown = _FakeTritonError("Request for unknown model: 'txt2img' is not found")
    assert isinstance(map_error(unknown, model="txt2img", url="u"), ModelNotFoundError)


def test_the_client_package_imports_without_torch_diffusers_or_onnx():
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'diffusers', 'onnx', 'onnxruntime', 'transformers'}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import ppo_client, ppo_client.cli, ppo_client.txt2img, ppo_client.generation
from ppo_client import Txt2ImgClient, AsyncTxt2ImgClient
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
