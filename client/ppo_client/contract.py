"""The server/client contract: model names, tensor names, dtypes and shapes, model-config parameters
and request limits.

This is the only place these facts live. The exporter generates ``config.pbtxt`` files from it,
the python-backend models read their inputs by these names, and the SDK builds requests from it.
Code names a tensor by attribute (``contract.TXT2IMG.PROMPT.name``), never by a string of its own.
It imports nothing heavy so that every side can use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Callable, ClassVar, Mapping, TypeVar

import numpy as np

T = TypeVar("T")


class DataType(enum.Enum):
    """Tensor element types used by the project, with their numpy and Triton spellings."""

    BYTES = ("BYTES", "TYPE_STRING", np.object_)
    UINT8 = ("UINT8", "TYPE_UINT8", np.uint8)
    INT32 = ("INT32", "TYPE_INT32", np.int32)
    INT64 = ("INT64", "TYPE_INT64", np.int64)
    FP32 = ("FP32", "TYPE_FP32", np.float32)

    @property
    def wire(self) -> str:
        """Name on the inference protocol (``"FP32"``)."""
        return self.value[0]

    @property
    def config(self) -> str:
        """Name in a model configuration (``"TYPE_FP32"``)."""
        return self.value[1]

    @property
    def numpy(self) -> type:
        return self.value[2]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output; ``dims`` exclude the batch dimension, -1 marks a variable one."""

    name: str
    dtype: DataType
    dims: tuple[int, ...]
    optional: bool = False


class _Role(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"


def _input(spec: TensorSpec) -> TensorSpec:
    return field(default=spec, init=False, metadata={_Role: _Role.INPUT})


def _output(spec: TensorSpec) -> TensorSpec:
    return field(default=spec, init=False, metadata={_Role: _Role.OUTPUT})


@dataclass(frozen=True)
class ModelContract:
    """A served model. Each subclass declares its tensors as fields named like the tensors, in
    wire order, so ``inputs``/``outputs`` list them and code reaches one as ``model.SAMPLE``."""

    name: str
    max_batch_size: int

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._tensors(_Role.INPUT)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._tensors(_Role.OUTPUT)

    def _tensors(self, role: _Role) -> tuple[TensorSpec, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.metadata.get(_Role) is role)

    def input(self, name: str) -> TensorSpec:
        return _find(self.inputs, name, self.name)

    def output(self, name: str) -> TensorSpec:
        return _find(self.outputs, name, self.name)


def _find(specs: tuple[TensorSpec, ...], name: str, model: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"model {model!r} has no tensor {name!r}")


# --- tensors that several models share, defined once ---

_INPUT_IDS = TensorSpec("INPUT_IDS", DataType.INT64, (-1,))
_LAST_HIDDEN_STATE = TensorSpec("LAST_HIDDEN_STATE", DataType.FP32, (-1, -1))
_TEXT_EMBEDS = TensorSpec("TEXT_EMBEDS", DataType.FP32, (-1,))
_RGB_IMAGE = TensorSpec("IMAGE", DataType.UINT8, (-1, -1, 3))
_EMBEDDING = TensorSpec("EMBEDDING", DataType.FP32, (-1,))
_SCORE = TensorSpec("SCORE", DataType.FP32, (1,))

USER_MODEL_INPUT = TensorSpec("USER_MODEL", DataType.BYTES, (1,))
"""A serialised ``ppo_client.head.PreferenceHead``, or ``USER_MODEL_REF_PREFIX`` + its
content hash when the same head travels in full in an earlier row of the request or was sent
to this server instance before. The server keeps heads only in memory."""
USER_MODEL_REF_PREFIX = "sha256:"
MAX_USER_MODEL_BYTES = 64 * 2**20


# --- component models (one ONNX graph each; tensor names equal the ONNX graph's names) ---


@dataclass(frozen=True)
class TextEncoderContract(ModelContract):
    """``LAST_HIDDEN_STATE`` is what the UNet is conditioned on: the last layer's states for SD
    1.x/2.x, the penultimate layer's for SDXL (as its pipeline takes them)."""

    INPUT_IDS: TensorSpec = _input(_INPUT_IDS)
    LAST_HIDDEN_STATE: TensorSpec = _output(_LAST_HIDDEN_STATE)


@dataclass(frozen=True)
class TextEncoder2Contract(TextEncoderContract):
    """SDXL's second text encoder: penultimate-layer states and the pooled, projected text embedding."""

    TEXT_EMBEDS: TensorSpec = _output(_TEXT_EMBEDS)


@dataclass(frozen=True)
class UNetContract(ModelContract):
    SAMPLE: TensorSpec = _input(TensorSpec("SAMPLE", DataType.FP32, (-1, -1, -1)))
    TIMESTEP: TensorSpec = _input(TensorSpec("TIMESTEP", DataType.FP32, (1,)))
    ENCODER_HIDDEN_STATES: TensorSpec = _input(TensorSpec("ENCODER_HIDDEN_STATES", DataType.FP32, (-1, -1)))
    NOISE_PRED: TensorSpec = _output(TensorSpec("NOISE_PRED", DataType.FP32, (-1, -1, -1)))


@dataclass(frozen=True)
class UNetXLContract(UNetContract):
    """SDXL's UNet (served under the same name): also the pooled text embedding and the size and crop
    conditioning ``(original h, w, crop top, left, target h, w)`` of each row."""

    TEXT_EMBEDS: TensorSpec = _input(_TEXT_EMBEDS)
    TIME_IDS: TensorSpec = _input(TensorSpec("TIME_IDS", DataType.FP32, (-1,)))


@dataclass(frozen=True)
class VaeDecoderContract(ModelContract):
    """Scaled latents in, images in [-1, 1] (channels first) out."""

    LATENT: TensorSpec = _input(TensorSpec("LATENT", DataType.FP32, (-1, -1, -1)))
    IMAGE: TensorSpec = _output(TensorSpec("IMAGE", DataType.FP32, (-1, -1, -1)))


TEXT_ENCODER = TextEncoderContract(name="text_encoder", max_batch_size=64)
TEXT_ENCODER_2 = TextEncoder2Contract(name="text_encoder_2", max_batch_size=64)
UNET = UNetContract(name="unet", max_batch_size=64)
UNET_XL = UNetXLContract(name="unet", max_batch_size=UNET.max_batch_size)
VAE_DECODER = VaeDecoderContract(name="vae_decoder", max_batch_size=64)


# --- the text-to-image pipeline model: one image per batch row ---


@dataclass(frozen=True)
class Txt2ImgContract(ModelContract):
    """Prompt rows in, one image each. The model's config parameters (``ServedPipeline``) say which
    family it is, which sizes and schedulers it serves."""

    PROMPT: TensorSpec = _input(TensorSpec("PROMPT", DataType.BYTES, (1,)))
    NEGATIVE_PROMPT: TensorSpec = _input(TensorSpec("NEGATIVE_PROMPT", DataType.BYTES, (1,), optional=True))
    SEED: TensorSpec = _input(TensorSpec("SEED", DataType.INT64, (1,)))
    STEPS: TensorSpec = _input(TensorSpec("STEPS", DataType.INT32, (1,)))
    GUIDANCE_SCALE: TensorSpec = _input(TensorSpec("GUIDANCE_SCALE", DataType.FP32, (1,)))
    HEIGHT: TensorSpec = _input(TensorSpec("HEIGHT", DataType.INT32, (1,)))
    WIDTH: TensorSpec = _input(TensorSpec("WIDTH", DataType.INT32, (1,)))
    SCHEDULER: TensorSpec = _input(TensorSpec("SCHEDULER", DataType.BYTES, (1,), optional=True))
    GUIDANCE_RESCALE: TensorSpec = _input(TensorSpec("GUIDANCE_RESCALE", DataType.FP32, (1,), optional=True))
    IMAGE: TensorSpec = _output(_RGB_IMAGE)


TXT2IMG = Txt2ImgContract(name="txt2img", max_batch_size=16)


# --- scoring: the image encoder (an ONNX graph), a user's preference model, generate-and-score ---


@dataclass(frozen=True)
class ImageEncoderContract(ModelContract):
    """RGB images of any size in; L2-normalised CLIP image embeddings out."""

    IMAGE: TensorSpec = _input(_RGB_IMAGE)
    EMBEDDING: TensorSpec = _output(_EMBEDDING)


@dataclass(frozen=True)
class PreferenceContract(ModelContract):
    """Embeddings and each row's user model in, the user's predicted score out."""

    EMBEDDING: TensorSpec = _input(_EMBEDDING)
    USER_MODEL: TensorSpec = _input(USER_MODEL_INPUT)
    SCORE: TensorSpec = _output(_SCORE)


@dataclass(frozen=True)
class Txt2ImgScoreContract(Txt2ImgContract):
    """Prompt + seed + user model -> image, its embedding and the user's predicted score."""

    USER_MODEL: TensorSpec = _input(USER_MODEL_INPUT)
    EMBEDDING: TensorSpec = _output(_EMBEDDING)
    SCORE: TensorSpec = _output(_SCORE)


@dataclass(frozen=True)
class ClipTextContract(ModelContract):
    """Texts in the image encoder's embedding space (zero-shot tags, subject guards), with each
    text's token count before truncation (the limit is ``ClipTextParameters.max_tokens``)."""

    TEXT: TensorSpec = _input(TensorSpec("TEXT", DataType.BYTES, (1,)))
    EMBEDDING: TensorSpec = _output(_EMBEDDING)
    TOKENS: TensorSpec = _output(TensorSpec("TOKENS", DataType.INT32, (1,)))


@dataclass(frozen=True)
class ClipTextGraphContract(ModelContract):
    """The ONNX graph inside ``clip_text``, which tokenizes first: token ids in, embeddings out."""

    INPUT_IDS: TensorSpec = _input(_INPUT_IDS)
    EMBEDDING: TensorSpec = _output(_EMBEDDING)


IMAGE_ENCODER = ImageEncoderContract(name="image_encoder", max_batch_size=64)
PREFERENCE = PreferenceContract(name="preference", max_batch_size=256)
TXT2IMG_SCORE = Txt2ImgScoreContract(name="txt2img_score", max_batch_size=TXT2IMG.max_batch_size)
CLIP_TEXT = ClipTextContract(name="clip_text", max_batch_size=64)
CLIP_TEXT_GRAPH = ClipTextGraphContract(name=CLIP_TEXT.name, max_batch_size=CLIP_TEXT.max_batch_size)

COMPONENTS = (TEXT_ENCODER, UNET, VAE_DECODER)
XL_COMPONENTS = (TEXT_ENCODER, TEXT_ENCODER_2, UNET_XL, VAE_DECODER)
SCORING_MODELS = (IMAGE_ENCODER, PREFERENCE, TXT2IMG_SCORE, CLIP_TEXT)
ALL_MODELS = (*COMPONENTS, TEXT_ENCODER_2, TXT2IMG, *SCORING_MODELS)
"""Every model name once (``UNET_XL`` is served as ``unet``)."""
ALL_CONTRACTS = (*ALL_MODELS, UNET_XL, CLIP_TEXT_GRAPH)
"""Every contract, graphs inside models included: their tensor names are all the names there are."""


class Family(str, enum.Enum):
    """Pipeline families served, spelled in JSON files and model configs by their values."""

    SD = "sd"
    """Stable Diffusion 1.x and 2.x: one CLIP text encoder."""
    SDXL = "sdxl"
    """Two text encoders, pooled text embeddings and size conditioning."""

    def __str__(self) -> str:
        return self.value


def components(family: Family) -> tuple[ModelContract, ...]:
    """The component models of a pipeline family."""
    return XL_COMPONENTS if family == Family.SDXL else COMPONENTS


def tensor_names() -> frozenset[str]:
    """Every tensor name of the contract (what no other module may spell as a string)."""
    return frozenset(t.name for m in ALL_CONTRACTS for t in (*m.inputs, *m.outputs))


# --- request limits, checked by the SDK before sending and by the server on arrival ---

MIN_STEPS = 1
MAX_STEPS = 200
MAX_GUIDANCE_SCALE = 100.0
SIDE_MULTIPLE = 8
"""Height and width are always multiples of this; a model may require a larger multiple."""
MAX_PROMPTS_PER_REQUEST = 8
"""Prompts (batch rows) one ``txt2img`` request may carry; the rest of the batch is for merging."""
SEED_RANGE = (0, 2**63 - 1)
MAX_TEXT_BYTES = 4096
"""UTF-8 bytes of one prompt, negative prompt or ``clip_text`` text; longer ones are refused before
tokenizing (CLIP text encoders read 77 tokens, a few hundred characters, and truncate the rest)."""

SCHEDULERS = ("pndm", "ddim", "euler", "euler_a", "dpm_multistep", "dpm_multistep_karras", "unipc", "lms", "lcm")
"""Names a request may pass as ``SCHEDULER``; empty means the checkpoint's own scheduler. Each is
built from the checkpoint's scheduler config; a served model offers those that build from it (its
config's ``schedulers`` parameter)."""


# --- model-config parameters: written by the exporter, read by the server models and the SDK ---

REEXPORT_HINT = "re-export the repository with this version's ppo-export"


def _flag(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return text == "true"


def _required(params: Mapping[str, str], key: str, parse: Callable[[str], T]) -> T:
    """One parameter of a model config. A missing or malformed one means another version of the
    exporter wrote the repository: no value is guessed, since a guess (an encoder id, a size limit)
    would be silently wrong."""
    if key not in params:
        raise ValueError(f"the model config has no {key!r} parameter; {REEXPORT_HINT}")
    try:
        return parse(params[key])
    except ValueError as exc:
        raise ValueError(
            f"the model config's {key!r} parameter {params[key]!r} is malformed ({exc}); {REEXPORT_HINT}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


@dataclass(frozen=True)
class SizeLimits:
    """Image sides a served pipeline supports; the server publishes its own in the model config."""

    multiple: int = SIDE_MULTIPLE
    min_side: int = SIDE_MULTIPLE
    max_side: int = 2048
    native_side: int = 512
    """The side the model was trained at; requests that leave height/width at 0 get it."""


@dataclass(frozen=True)
class ServedPipeline:
    """What one exported ``txt2img`` (and ``txt2img_score``) serves: the exporter writes it, the server
    model and the SDK (which checks requests against it) read it."""

    family: Family
    limits: SizeLimits
    schedulers: tuple[str, ...]
    """The contract's scheduler names this checkpoint's scheduler config builds."""
    default_scheduler: str
    """The checkpoint's own scheduler class (what ``scheduler=""`` gets)."""

    def to_parameters(self) -> dict[str, str]:
        return {
            "family": str(self.family),
            "size_multiple": str(self.limits.multiple),
            "min_side": str(self.limits.min_side),
            "max_side": str(self.limits.max_side),
            "native_side": str(self.limits.native_side),
            "schedulers": ",".join(self.schedulers),
            "default_scheduler": self.default_scheduler,
        }

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> ServedPipeline:
        """Raises ``ValueError`` naming what is missing or malformed."""
        limits = SizeLimits(
            multiple=_required(params, "size_multiple", int), min_side=_required(params, "min_side", int),
            max_side=_required(params, "max_side", int), native_side=_required(params, "native_side", int),
        )
        return cls(
            family=_required(params, "family", Family),
            limits=limits,
            schedulers=_required(params, "schedulers", _names),
            default_scheduler=_required(params, "default_scheduler", str),
        )


@dataclass(frozen=True)
class ImageEncoderParameters:
    """Which encoder ``image_encoder`` is: ``encoder_id`` names its exact weights (the key of the
    SDK's embedding caches, so embeddings of different encoders never mix)."""

    encoder_id: str
    embedding_dim: int

    def to_parameters(self) -> dict[str, str]:
        return {"encoder_id": self.encoder_id, "embedding_dim": str(self.embedding_dim)}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> ImageEncoderParameters:
        return cls(_required(params, "encoder_id", _non_empty), _required(params, "embedding_dim", int))


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("it is empty")
    return text


@dataclass(frozen=True)
class ClipTextParameters:
    max_tokens: int
    """Tokens the text tower reads; longer texts are truncated (``CLIP_TEXT.TOKENS`` tells)."""

    def to_parameters(self) -> dict[str, str]:
        return {"max_tokens": str(self.max_tokens)}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> ClipTextParameters:
        return cls(_required(params, "max_tokens", int))


@dataclass(frozen=True)
class ComponentParameters:
    """A component that runs onnxruntime inside a python-backend model (``clip_text`` too)."""

    intra_op_threads: int
    """onnxruntime threads per model instance; 0 lets onnxruntime choose."""
    spin: bool = False
    """onnxruntime's worker threads spin between operators instead of sleeping."""
    optional: ClassVar[tuple[str, ...]] = ("spin",)
    """Parameters a config may lack: repositories written before them run as they did."""

    def to_parameters(self) -> dict[str, str]:
        return {"intra_op_threads": str(self.intra_op_threads), "spin": str(self.spin).lower()}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> ComponentParameters:
        spin = _required(params, "spin", _flag) if "spin" in params else False
        return cls(_required(params, "intra_op_threads", int), spin)


@dataclass(frozen=True)
class HeadCacheParameters:
    """``preference`` and ``txt2img_score``: memory each instance may keep decoded users' heads in."""

    head_cache_bytes: int

    def to_parameters(self) -> dict[str, str]:
        return {"head_cache_bytes": str(self.head_cache_bytes)}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> HeadCacheParameters:
        return cls(_required(params, "head_cache_bytes", int))


@dataclass(frozen=True)
class CudaGraphParameters:
    """``torch-cuda`` components: batch sizes replayed as CUDA graphs (rows pad up to the next one).

    The one optional parameter: only components called once per denoising step (the UNet) carry it,
    and an export with graphs turned off leaves it out, so a config without it means eager runs."""

    PARAMETER: ClassVar[str] = "cuda_graph_batches"

    cuda_graph_batches: tuple[int, ...]

    def __post_init__(self) -> None:
        if any(size < 1 for size in self.cuda_graph_batches):
            raise ValueError(f"{self.PARAMETER} must list positive batch sizes, got {self.cuda_graph_batches}")

    @classmethod
    def from_text(cls, text: str) -> CudaGraphParameters:
        """``"8, 2,4"`` -> sizes (2, 4, 8); empty means no graphs. Raises ``ValueError``."""
        try:
            sizes = {int(part) for part in text.replace(" ", "").split(",") if part}
        except ValueError:
            raise ValueError(f"{cls.PARAMETER} must list positive batch sizes, got {text!r}") from None
        return cls(tuple(sorted(sizes)))

    def to_parameters(self) -> dict[str, str]:
        return {self.PARAMETER: ",".join(map(str, self.cuda_graph_batches))} if self.cuda_graph_batches else {}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> CudaGraphParameters:
        if cls.PARAMETER not in params:
            return cls(())
        return _required(params, cls.PARAMETER, cls.from_text)
