"""What one export is asked for: the target, its precision and the serving settings.

The defaults live here, once: ``ppo-export`` reads its flags' defaults from ``ExportOptions()``, and
everything the exporter writes into model configs comes from these fields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ppo_client import contract
from ppo_client.contract import CudaGraphParameters
from ppo_server.errors import ExportError
from ppo_server.export.model_config import ServingOptions
from ppo_server.export.tensorrt import require_tensorrt


class Target(enum.Enum):
    """Where and how the components run; the pipeline models (``txt2img`` ...) are python-backend
    models in every target."""

    PYTHON = "python"
    """onnxruntime inside python-backend models (CPU, any Triton)."""
    ONNXRUNTIME = "onnxruntime"
    """Triton's own onnxruntime backend on the GPU."""
    TENSORRT = "tensorrt"
    """TensorRT engines built from the ONNX files (Triton's TensorRT backend)."""
    TORCH_CUDA = "torch-cuda"
    """The torch modules themselves in python-backend models, fp16 on a GPU (fp32 on a CPU)."""


ONNX_RUNTIME_MODELS = tuple(m.name for m in (*contract.XL_COMPONENTS, contract.IMAGE_ENCODER, contract.CLIP_TEXT))
"""The models that run an onnxruntime session inside a python-backend model (``python`` target)."""


class Precision(enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    """Half-precision TensorRT layers (``tensorrt`` only; ONNX files are exported in fp32)."""


@dataclass(frozen=True)
class ExportOptions:
    scheduler: str = ""
    """Replace the pipeline's scheduler by one of ``contract.SCHEDULERS`` (its config is kept)."""
    max_side: int | None = None
    """Largest height/width served; default four times the model's native side."""
    intra_op_threads: int = 0
    """onnxruntime threads per component model instance; 0 lets onnxruntime choose."""
    spin_models: tuple[str, ...] = (contract.UNET.name,)
    """``python`` target: the component models whose onnxruntime threads spin between operators
    rather than sleep. The UNet runs hundreds of short operators per step, and waking sleeping
    threads for each cost a lone request a quarter of its latency; spinning everywhere takes cores
    from the other loop's work (``benchmarks/tuning.py``)."""
    component_serving: ServingOptions = ServingOptions(max_queue_delay_us=0)
    """Components batch what queued while they were busy, without waiting for more: a wait is paid on
    every denoising step of a lone request, and the pipeline loops already merge concurrent ones
    (``benchmarks/tuning.py``)."""
    txt2img_serving: ServingOptions = ServingOptions(instance_count=2, max_queue_delay_us=5000)
    """Pipeline loops that may run at once, and how long ``txt2img`` waits to merge requests
    (``txt2img_score`` is scheduled alike)."""
    preference_serving: ServingOptions = ServingOptions(max_queue_delay_us=500)
    target: Target = Target.PYTHON
    precision: Precision = Precision.FP32
    """``FP16`` builds TensorRT engines with half-precision layers (``tensorrt`` only)."""
    max_images: int = 8
    """TensorRT profiles: images per component execution at most."""
    cuda_graph_batches: tuple[int, ...] = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    """``torch-cuda``: UNet rows per step replayed as CUDA graphs (twice the images with guidance);
    a batch pads up to the next size; empty: eager."""
    head_cache_bytes: int = 256 * 2**20
    """Memory each ``preference``/``txt2img_score`` instance may keep decoded users' heads in."""

    def check(self) -> None:
        """Refuse what cannot work before any work is done (a missing library included)."""
        if self.scheduler and self.scheduler not in contract.SCHEDULERS:
            raise ExportError(f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(contract.SCHEDULERS)}")
        if self.precision is Precision.FP16 and self.target is not Target.TENSORRT:
            raise ExportError("--precision fp16 applies to --target tensorrt only (ONNX files are exported in fp32)")
        try:
            CudaGraphParameters(self.cuda_graph_batches)
        except ValueError as exc:
            raise ExportError(f"--cuda-graph-batches: {exc}") from None
        unknown = sorted(set(self.spin_models) - set(ONNX_RUNTIME_MODELS))
        if unknown:
            raise ExportError(f"--spin-models: {', '.join(unknown)} is not a component model; choose from "
                              f"{', '.join(ONNX_RUNTIME_MODELS)}")
        if self.head_cache_bytes < 0:
            raise ExportError(f"the head cache must be 0 bytes or more, got {self.head_cache_bytes}")
        if self.target is Target.TENSORRT:
            require_tensorrt()


DEFAULT_OPTIONS = ExportOptions()
"""What an export is asked for when nothing is said (frozen: one instance serves every default argument)."""
