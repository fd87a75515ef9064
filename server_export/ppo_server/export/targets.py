"""One writer per export target: how an exported component becomes that target's Triton model.

    Target.PYTHON       PythonWriter       ONNX file + python-backend shim running onnxruntime (CPU)
    Target.ONNXRUNTIME  OnnxRuntimeWriter  ONNX file for Triton's own onnxruntime backend (GPU)
    Target.TENSORRT     TensorRTWriter     a TensorRT engine built from the ONNX file (GPU)
    Target.TORCH_CUDA   TorchCudaWriter    the torch module itself in a python-backend model

Every writer consumes the same ``ExportSpec``; what differs is only what lands beside the config.
Models that are python-backend models whatever the target (``txt2img`` ...) are written with
``write_python_model``.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ppo_client.contract import ComponentParameters, CudaGraphParameters, ModelContract
from ppo_client.manifests import TorchManifest
from ppo_server.export import specs as export_specs
from ppo_server.export.model_config import Platform, ServingOptions, build_config, write_config
from ppo_server.export.onnx_exporter import ExportReport, export_onnx
from ppo_server.export.options import ExportOptions, Precision, Target
from ppo_server.export.specs import ExportDims, ExportSpec
from ppo_server.export.tensorrt import ProfileLimits, build_engine

ONNX_FILE = "model.onnx"
TORCH_BACKEND = "ppo_server.backends.torch_model"
TORCH_WEIGHTS = "weights"


def shim_source(model_name: str, module: str | None = None) -> str:
    """The ``model.py`` of a python-backend model: it only points at the installed package (the
    versioned ones under ``model_repository/`` are exactly this)."""
    module = module or export_specs.BACKEND_MODULES[model_name]
    return (
        f'"""Triton python-backend entry point for `{model_name}`; the code lives in `{module}`."""\n\n'
        f"from {module} import TritonPythonModel  # noqa: F401\n"
    )


def write_shim(model_dir: Path, name: str, module: str | None = None) -> None:
    path = model_dir / "1" / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shim_source(name, module))


def write_python_model(contract: ModelContract, backend: str, model_dir: Path, serving: ServingOptions) -> None:
    """A python-backend model: its generated config and the shim that imports ``backend``."""
    write_config(build_config(contract, serving), model_dir)
    write_shim(model_dir, contract.name, backend)


def _with_parameters(serving: ServingOptions, parameters: Mapping[str, str]) -> ServingOptions:
    """``serving`` with the target's own parameters added (the model's own win on a clash)."""
    return dataclasses.replace(serving, parameters={**parameters, **serving.parameters})


class ComponentWriter(abc.ABC):
    """Writes one exported component as this target's Triton model."""

    target: ClassVar[Target]

    def export(
        self, spec: ExportSpec, module, dims: ExportDims, model_dir: Path, serving: ServingOptions,
        *, wrapper_kwargs: Mapping[str, Any] | None = None,
    ) -> ExportReport:
        """Trace the component to ONNX (checked against torch), then write the model around it."""
        report = export_onnx(spec, module, dims, model_dir / "1" / ONNX_FILE, wrapper_kwargs=wrapper_kwargs)
        self.write(spec, model_dir, serving, module=module, wrapper_kwargs=wrapper_kwargs)
        return report

    @abc.abstractmethod
    def write(
        self, spec: ExportSpec, model_dir: Path, serving: ServingOptions, *, module,
        wrapper_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the model's config and what the target runs, the ONNX file being in place already.
        ``serving.parameters`` are the model's own (``encoder_id`` ...); the writer adds the target's."""


@dataclass(frozen=True)
class PythonWriter(ComponentWriter):
    target: ClassVar[Target] = Target.PYTHON
    intra_op_threads: int = 0
    spin_models: tuple[str, ...] = ()

    def write(self, spec, model_dir, serving, *, module, wrapper_kwargs=None) -> None:
        own = ComponentParameters(self.intra_op_threads, spec.contract.name in self.spin_models).to_parameters()
        write_python_model(spec.contract, spec.backend, model_dir, _with_parameters(serving, own))


@dataclass(frozen=True)
class OnnxRuntimeWriter(ComponentWriter):
    target: ClassVar[Target] = Target.ONNXRUNTIME

    def write(self, spec, model_dir, serving, *, module, wrapper_kwargs=None) -> None:
        write_config(build_config(spec.contract, serving, platform=Platform.ONNXRUNTIME), model_dir)


@dataclass(frozen=True)
class TensorRTWriter(ComponentWriter):
    target: ClassVar[Target] = Target.TENSORRT
    limits: ProfileLimits
    precision: Precision = Precision.FP32
    force_upcast: bool = False
    """The checkpoint's VAE asks to decode in fp32: the specs marked ``upcast`` are never fp16."""

    def write(self, spec, model_dir, serving, *, module, wrapper_kwargs=None) -> None:
        fp16 = self.precision is Precision.FP16 and not (self.force_upcast and spec.upcast)
        shapes = spec.shape_ranges(self.limits)
        build_engine(model_dir / "1" / ONNX_FILE, model_dir / "1" / "model.plan", shapes, fp16=fp16)
        rows = spec.batch_range(self.limits)[2]
        write_config(build_config(spec.contract, serving, platform=Platform.TENSORRT, max_batch_size=rows), model_dir)


@dataclass(frozen=True)
class TorchCudaWriter(ComponentWriter):
    """The module is saved with ``save_pretrained`` beside a manifest naming its class and the same
    wrapper the ONNX export traces, so both targets compute one function. On a GPU the components
    run in fp16 with PyTorch's scaled-dot-product attention except those marked ``upcast`` (fp16
    VAEs can overflow to NaN); those marked ``graphed`` replay CUDA graphs. Without a GPU the same
    models run eagerly in fp32 on the CPU, which is how this target is tested here."""

    target: ClassVar[Target] = Target.TORCH_CUDA
    cuda_graph_batches: tuple[int, ...] = ()

    def export(self, spec, module, dims, model_dir, serving, *, wrapper_kwargs=None) -> ExportReport:
        """Serves the torch module itself: there is no ONNX file to trace."""
        started = time.perf_counter()
        self.write(spec, model_dir, serving, module=module, wrapper_kwargs=wrapper_kwargs)
        return ExportReport(spec.contract.name, str(model_dir / "1" / TORCH_WEIGHTS), time.perf_counter() - started)

    def write(self, spec, model_dir, serving, *, module, wrapper_kwargs=None) -> None:
        import torch

        if module is None:
            raise ValueError(f"the torch-cuda target needs the {spec.contract.name} module")
        module.save_pretrained(model_dir / "1" / TORCH_WEIGHTS, safe_serialization=True)
        cls = type(module)
        TorchManifest(
            model=spec.contract.name,
            spec=spec.key,
            wrapper=spec.wrap.__name__,
            module_class=f"{cls.__module__}.{cls.__name__}",
            wrapper_kwargs=dict(wrapper_kwargs or {}),
            fp16_on_gpu=not spec.upcast,
        ).write(model_dir / "1")
        graphs = CudaGraphParameters(self.cuda_graph_batches if spec.graphed else ())
        config = build_config(spec.contract, _with_parameters(serving, graphs.to_parameters()))
        if torch.cuda.is_available():  # the export runs on the host that will serve
            config.instance_group[0].kind = config.instance_group[0].KIND_GPU
        write_config(config, model_dir)
        (model_dir / "1" / "model.py").write_text(
            f'"""Triton python-backend entry point for `{spec.contract.name}` (torch target)."""\n\n'
            f"from {TORCH_BACKEND} import TritonPythonModel  # noqa: F401\n"
        )


def writer_for(
    options: ExportOptions, limits: ProfileLimits | None = None, *, force_upcast: bool = False
) -> ComponentWriter:
    """The writer of ``options.target``; ``limits`` are the pipeline's TensorRT profile limits (by
    default the options' image count at CLIP's usual 512 px, for an image encoder alone)."""
    if options.target is Target.PYTHON:
        return PythonWriter(options.intra_op_threads, options.spin_models)
    if options.target is Target.ONNXRUNTIME:
        return OnnxRuntimeWriter()
    if options.target is Target.TENSORRT:
        return TensorRTWriter(limits or ProfileLimits(max_images=options.max_images), options.precision, force_upcast)
    return TorchCudaWriter(tuple(sorted(set(options.cuda_graph_batches))))
