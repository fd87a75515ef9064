"""The files the exporter leaves beside exported models for the python-backend models to read: one
frozen dataclass per file, written and read only here, so both sides agree on every field.

    REPO/txt2img/1/pipeline/manifest.json     PipelineManifest   what the txt2img loop needs of the pipeline
    REPO/<component>/1/torch_manifest.json    TorchManifest      torch-cuda target: the saved module and its wrapper

Reading refuses (``DataError``) a file that is missing, is not a JSON object, or lacks or mangles a
field, naming the file and the field. A field that older exporters did not write gets the default its
class documents; no other value is guessed, since a guess would be silently wrong. Fields a newer
exporter adds are ignored. Like ``contract``, this module imports nothing heavy.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from ppo_client.contract import REEXPORT_HINT, Family
from ppo_client.errors import DataError

T = TypeVar("T")
M = TypeVar("M", bound="_Manifest")

PIPELINE_MANIFEST = "manifest.json"
"""``PipelineManifest``'s file, in ``REPO/txt2img/1/pipeline/``."""
TORCH_MANIFEST = "torch_manifest.json"
"""``TorchManifest``'s file, in ``REPO/<component>/1/`` of each torch-cuda component."""

_REQUIRED: Any = object()


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not a whole number")
    if value <= 0:
        raise ValueError("not positive")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("not true or false")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not a non-empty string")
    return value


def _dotted(value: object) -> str:
    """``package.module.Class``."""
    if not isinstance(value, str) or not all(value.rpartition(".")[::2]):
        raise ValueError("not a dotted module.Class name")
    return value


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return dict(value)


def _family(value: object) -> Family:
    try:
        return Family(value)
    except (TypeError, ValueError):
        raise ValueError(f"not one of {', '.join(f.value for f in Family)}") from None


class _Fields:
    """The fields of one manifest file, each read once through a parser that raises ``ValueError``."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data, self.path = data, path

    def __call__(self, name: str, parse: Callable[[Any], T], default: T = _REQUIRED) -> T:
        if name not in self.data:
            if default is _REQUIRED:
                raise DataError(f"{self.path}: no {name!r} field; {REEXPORT_HINT}")
            return default
        try:
            return parse(self.data[name])
        except ValueError as exc:
            raise DataError(
                f"{self.path}: the {name!r} field {_short(self.data[name])} is malformed ({exc}); {REEXPORT_HINT}"
            ) from None


class _Manifest(abc.ABC):
    """A JSON file of one exported model: ``write``/``read`` in a folder, ``to_json``/``from_json``."""

    FILE: ClassVar[str]

    @abc.abstractmethod
    def _to_dict(self) -> dict[str, Any]:
        """The file's content; a field that is ``None`` is left out."""

    @classmethod
    @abc.abstractmethod
    def _from_fields(cls: type[M], field: _Fields) -> M:
        """The manifest from the file's fields, each read through ``field``."""

    def to_json(self) -> str:
        return json.dumps(self._to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls: type[M], text: str, *, path: str | Path | None = None) -> M:
        """``path`` names the file in messages (``FILE`` if not given)."""
        label = str(path or cls.FILE)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{label} is not JSON ({exc}); {REEXPORT_HINT}") from None
        if not isinstance(data, dict):
            raise DataError(f"{label} holds {_short(data)}, not a JSON object; {REEXPORT_HINT}")
        return cls._from_fields(_Fields(data, label))

    def write(self, folder: Path) -> Path:
        """Write ``folder/FILE``; returns its path."""
        path = Path(folder) / self.FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls: type[M], folder: Path) -> M:
        """Read ``folder/FILE``."""
        path = Path(folder) / cls.FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise DataError(f"{path} is missing; {REEXPORT_HINT}") from None
        return cls.from_json(text, path=path)


@dataclass(frozen=True, kw_only=True)
class PipelineManifest(_Manifest):
    """What the ``txt2img`` model needs of the exported pipeline, beside its tokenizers and scheduler.

    Defaults for exports made before pipeline families were served, which wrote neither ``family``
    nor ``force_zeros_for_empty_prompt``: they were all Stable Diffusion 1.x/2.x pipelines, so
    ``family`` is ``Family.SD`` and ``force_zeros_for_empty_prompt`` is ``True`` (diffusers' default;
    the ``sd`` loop does not use it). Every other field has been written since the first exporter.
    """

    FILE: ClassVar[str] = PIPELINE_MANIFEST

    source: str
    """The ``--model`` the pipeline was exported from (a folder or hub id)."""
    family: Family = Family.SD
    latent_channels: int
    vae_scale_factor: int
    """Pixels per latent along each side."""
    native_side: int
    """The side the model was trained at, in pixels."""
    text_max_length: int
    """Tokens the text encoder reads."""
    force_zeros_for_empty_prompt: bool = True
    """SDXL: an empty negative prompt conditions on zeros rather than on the encoded empty text."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", Family(self.family))

    def _to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "family": self.family.value,
            "latent_channels": self.latent_channels,
            "vae_scale_factor": self.vae_scale_factor,
            "native_side": self.native_side,
            "text_max_length": self.text_max_length,
            "force_zeros_for_empty_prompt": self.force_zeros_for_empty_prompt,
        }

    @classmethod
    def _from_fields(cls, field: _Fields) -> PipelineManifest:
        return cls(
            source=field("source", _text),
            family=field("family", _family, Family.SD),
            latent_channels=field("latent_channels", _positive_int),
            vae_scale_factor=field("vae_scale_factor", _positive_int),
            native_side=field("native_side", _positive_int),
            text_max_length=field("text_max_length", _positive_int),
            force_zeros_for_empty_prompt=field("force_zeros_for_empty_prompt", _flag, True),
        )


@dataclass(frozen=True, kw_only=True)
class TorchManifest(_Manifest):
    """A torch-cuda component: the module saved with ``save_pretrained`` beside this file and the
    export wrapper that runs it, so the served function is the one the ONNX export traces.

    Defaults for older exports: those made before manifests named their wrapper lack ``wrapper``,
    the oldest also ``spec``; both are then ``None`` (the backend finds the wrapper from ``spec``,
    else from ``model``), and ``None`` is never written.
    """

    FILE: ClassVar[str] = TORCH_MANIFEST

    model: str
    """The served model's name (``contract.UNET.name`` ...)."""
    spec: str | None = None
    """The export spec's key (``unet_xl`` ...)."""
    wrapper: str | None = None
    """The class in ``ppo_server.wrappers`` that wraps the module."""
    module_class: str
    """``package.module.Class`` of the saved module (its ``from_pretrained`` loads it)."""
    wrapper_kwargs: Mapping[str, Any]
    """Keyword arguments of the wrapper besides the module (JSON values)."""
    fp16_on_gpu: bool
    """Runs in fp16 on a GPU (false for components marked ``upcast``)."""

    def _to_dict(self) -> dict[str, Any]:
        optional = {"spec": self.spec, "wrapper": self.wrapper}
        return {
            "model": self.model,
            **{name: value for name, value in optional.items() if value is not None},
            "module_class": self.module_class,
            "wrapper_kwargs": dict(self.wrapper_kwargs),
            "fp16_on_gpu": self.fp16_on_gpu,
        }

    @classmethod
    def _from_fields(cls, field: _Fields) -> TorchManifest:
        return cls(
            model=field("model", _text),
            spec=field("spec", _text, None),
            wrapper=field("wrapper", _text, None),
            module_class=field("module_class", _dotted),
            wrapper_kwargs=field("wrapper_kwargs", _object),
            fp16_on_gpu=field("fp16_on_gpu", _flag),
        )
