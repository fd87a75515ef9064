import subprocess
import sys
import time

import pytest

from ppo_client import triton
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


def _config(parameters: dict[str, str]) -> dict:
    """A model config as gRPC's get_model_config(as_json=True) returns it."""
    return {"config": {"parameters": {k: {"string_value": v} for k, v in parameters.items()}}}


def test_an_encoder_without_its_id_is_a_server_error_that_says_to_re_export():
    # the id keys the embedding caches: guessing one ("unknown") would mix encoders' embeddings
    from ppo_client.errors import ServerError
    from ppo_client.scoring import _encoder_info

    text = _config({"max_tokens": "77"})
    info = _encoder_info(_config({"encoder_id": "clip-1", "embedding_dim": "512"}), text, "grpc://h:1")
    assert (info.encoder_id, info.dim, info.max_tokens) == ("clip-1", 512, 77)
    with pytest.raises(ServerError, match="image_encoder: .*'encoder_id'.*re-export") as caught:
        _encoder_info(_config({"embedding_dim": "512"}), text, "grpc://h:1")
    assert caught.value.url == "grpc://h:1"
    with pytest.raises(ServerError, match="clip_text: .*'max_tokens'.*re-export"):
        _encoder_info(_config({"encoder_id": "clip-1", "embedding_dim": "512"}), _config({}), "grpc://h:1")


def test_a_txt2img_config_without_its_family_is_a_server_error_that_says_to_re_export():
    from ppo_client.contract import ServedPipeline, SizeLimits
    from ppo_client.errors import ServerError
    from ppo_client.txt2img import _pipeline_from_config

    served = ServedPipeline("sd", SizeLimits(16, 16, 256, 64), ("ddim",), "PNDMScheduler")
    assert _pipeline_from_config(_config(served.to_parameters()), "h:1") == served
    without_family = {k: v for k, v in served.to_parameters().items() if k != "family"}
    with pytest.raises(ServerError, match="txt2img: .*'family'.*re-export"):
        _pipeline_from_config(_config(without_family), "h:1")


# --- a server that comes back: the gRPC channel's reconnect backoff must not fail the first calls ---


class _Repository:
    """A stand-in Triton gRPC server that answers the repository index (one READY model)."""

    def __init__(self, port: int) -> None:
        from concurrent import futures

        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
            def RepositoryIndex(self, request, context):
                model = service_pb2.RepositoryIndexResponse.ModelIndex(name="txt2img", state="READY")
                return service_pb2.RepositoryIndexResponse(models=[model])

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)
        assert self.server.add_insecure_port(f"127.0.0.1:{port}") == port
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


def _fail_for(client, seconds: float) -> None:
    """Calls to a server that is down, spaced out, until the channel's backoff has grown."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with pytest.raises(ServerUnavailableError, match="cannot reach"):
            client.served_models()
        time.sleep(0.2)


def test_a_server_that_comes_back_is_reached_by_the_first_call_after_it_does():
    from ppo_client.processes import free_port
    from ppo_client.txt2img import Txt2ImgClient

    port = free_port()
    with Txt2ImgClient(f"127.0.0.1:{port}", connect_retry_s=0) as client:
        _fail_for(client, 1.5)  # grpc's own backoff would now be 1.6 s or more, doubling on
        server = _Repository(port)
        try:
            client.connect_retry_s = triton.CONNECT_RETRY_S
            started = time.monotonic()
            assert client.served_models() == [("txt2img", "READY")]
            assert time.monotonic() - started < 1.5
            with Txt2ImgClient(f"127.0.0.1:{port}", connect_retry_s=0) as fresh:  # no backoff inherited
                assert fresh.served_models() == [("txt2img", "READY")]
        finally:
            server.stop()


def test_an_unreachable_server_is_reported_after_the_connect_retry_window():
    from ppo_client.processes import free_port
    from ppo_client.txt2img import Txt2ImgClient

    with Txt2ImgClient(f"127.0.0.1:{free_port()}", connect_retry_s=0.5) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match="cannot reach"):
            client.served_models()
        assert 0.1 < time.monotonic() - started < 1.5


def test_only_calls_that_never_reached_the_server_are_tried_again():
    refused = _FakeTritonError("failed to connect to all addresses; last error: Connection refused",
                               "StatusCode.UNAVAILABLE")
    assert triton.should_retry(refused) and triton.should_retry(ConnectionRefusedError())
    for reached in (_FakeTritonError("Socket closed", "StatusCode.UNAVAILABLE"),
                    _FakeTritonError("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED"),
                    _FakeTritonError("STEPS: must be between 1 and 200", "StatusCode.INVALID_ARGUMENT"),
                    ConnectionResetError()):
        assert not triton.should_retry(reached), reached
    delays = [triton.retry_delay_s(a) for a in range(12)]
    assert all(0 < d <= triton.RETRY_DELAY_CAP_S for d in delays) and max(delays) > triton.RETRY_DELAY_S
