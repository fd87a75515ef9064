"""The server/client contract: model names, tensor names, dtypes, shapes and request limits.

This is the only place these facts live. The exporter generates ``config.pbtxt`` files from it,
the python-backend models read their inputs by these names, and the SDK builds requests from it.
It imports nothing heavy so that every side can use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


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


@dataclass(frozen=True)
class ModelContract:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int

    def input(self, name: str) -> TensorSpec:
        return _find(self.inputs, name, self.name)

    def output(self, name: str) -> TensorSpec:
        return _find(self.outputs, name, self.name)


def _find(specs: tuple[TensorSpec, ...], name: str, model: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"model {model!r} has no tensor {name!r}")


# --- component models (one ONNX graph each; tensor names equal the ONNX graph's names) ---

TEXT_ENCODER = ModelContract(
    name="text_encoder",
    inputs=(TensorSpec("INPUT_IDS", DataType.INT64, (-1,)),),
    outputs=(TensorSpec("LAST_HIDDEN_STATE", DataType.FP32, (-1, -1)),),
    max_batch_size=64,
)
"""``LAST_HIDDEN_STATE`` is what the UNet is conditioned on: the last layer's states for SD 1.x/2.x,
the penultimate layer's for SDXL (as its pipeline takes them)."""

TEXT_ENCODER_2 = ModelContract(
    name="text_encoder_2",
    inputs=(TensorSpec("INPUT_IDS", DataType.INT64, (-1,)),),
    outputs=(
        TensorSpec("LAST_HIDDEN_STATE", DataType.FP32, (-1, -1)),
        TensorSpec("TEXT_EMBEDS", DataType.FP32, (-1,)),
    ),
    max_batch_size=64,
)
"""SDXL's second text encoder: penultimate-layer states and the pooled, projected text embedding."""

UNET = ModelContract(
    name="unet",
    inputs=(
        TensorSpec("SAMPLE", DataType.FP32, (-1, -1, -1)),
        TensorSpec("TIMESTEP", DataType.FP32, (1,)),
        TensorSpec("ENCODER_HIDDEN_STATES", DataType.FP32, (-1, -1)),
    ),
    outputs=(TensorSpec("NOISE_PRED", DataType.FP32, (-1, -1, -1)),),
    max_batch_size=64,
)

UNET_XL = ModelContract(
    name="unet",
    inputs=(
        *UNET.inputs,
        TensorSpec("TEXT_EMBEDS", DataType.FP32, (-1,)),
        TensorSpec("TIME_IDS", DataType.FP32, (-1,)),
    ),
    outputs=UNET.outputs,
    max_batch_size=UNET.max_batch_size,
)
"""SDXL's UNet (served under the same name): also the pooled text embedding and the size and crop
conditioning ``(original h, w, crop top, left, target h, w)`` of each row."""

VAE_DECODER = ModelContract(
    name="vae_decoder",
    inputs=(TensorSpec("LATENT", DataType.FP32, (-1, -1, -1)),),
    outputs=(TensorSpec("IMAGE", DataType.FP32, (-1, -1, -1)),),
    max_batch_size=64,
)

# --- the text-to-image pipeline model: one image per batch row ---

TXT2IMG = ModelContract(
    name="txt2img",
    inputs=(
        TensorSpec("PROMPT", DataType.BYTES, (1,)),
        TensorSpec("NEGATIVE_PROMPT", DataType.BYTES, (1,), optional=True),
        TensorSpec("SEED", DataType.INT64, (1,)),
        TensorSpec("STEPS", DataType.INT32, (1,)),
        TensorSpec("GUIDANCE_SCALE", DataType.FP32, (1,)),
        TensorSpec("HEIGHT", DataType.INT32, (1,)),
        TensorSpec("WIDTH", DataType.INT32, (1,)),
        TensorSpec("SCHEDULER", DataType.BYTES, (1,), optional=True),
        TensorSpec("GUIDANCE_RESCALE", DataType.FP32, (1,), optional=True),
    ),
    outputs=(TensorSpec("IMAGE", DataType.UINT8, (-1, -1, 3)),),
    max_batch_size=16,
)
"""Prompt rows in, one image each. The model's config parameters (``generation.ServedPipeline``)
say which family it is, which sizes and schedulers it serves."""

# --- scoring: the image encoder (an ONNX graph), a user's preference model, generate-and-score ---

IMAGE_ENCODER = ModelContract(
    name="image_encoder",
    inputs=(TensorSpec("IMAGE", DataType.UINT8, (-1, -1, 3)),),
    outputs=(TensorSpec("EMBEDDING", DataType.FP32, (-1,)),),
    max_batch_size=64,
)
"""RGB images of any size in; L2-normalised CLIP image embeddings out."""

USER_MODEL_INPUT = TensorSpec("USER_MODEL", DataType.BYTES, (1,))
"""A serialised ``ppo_client.piaa.head.PreferenceHead``, or ``USER_MODEL_REF_PREFIX`` + its
content hash when the same head travels in full in an earlier row of the request or was sent
to this server instance before. The server keeps heads only in memory."""
USER_MODEL_REF_PREFIX = "sha256:"
MAX_USER_MODEL_BYTES = 64 * 2**20

PREFERENCE = ModelContract(
    name="preference",
    inputs=(TensorSpec("EMBEDDING", DataType.FP32, (-1,)), USER_MODEL_INPUT),
    outputs=(TensorSpec("SCORE", DataType.FP32, (1,)),),
    max_batch_size=256,
)

TXT2IMG_SCORE = ModelContract(
    name="txt2img_score",
    inputs=(*TXT2IMG.inputs, USER_MODEL_INPUT),
    outputs=(
        TensorSpec("IMAGE", DataType.UINT8, (-1, -1, 3)),
        TensorSpec("EMBEDDING", DataType.FP32, (-1,)),
        TensorSpec("SCORE", DataType.FP32, (1,)),
    ),
    max_batch_size=TXT2IMG.max_batch_size,
)
"""Prompt + seed + user model -> image, its embedding and the user's predicted score."""

CLIP_TEXT = ModelContract(
    name="clip_text",
    inputs=(TensorSpec("TEXT", DataType.BYTES, (1,)),),
    outputs=(TensorSpec("EMBEDDING", DataType.FP32, (-1,)), TensorSpec("TOKENS", DataType.INT32, (1,))),
    max_batch_size=64,
)
"""Texts in the image encoder's embedding space (zero-shot tags, subject guards), with each text's
token count before truncation (the limit is the model config's ``max_tokens`` parameter)."""

COMPONENTS = (TEXT_ENCODER, UNET, VAE_DECODER)
XL_COMPONENTS = (TEXT_ENCODER, TEXT_ENCODER_2, UNET_XL, VAE_DECODER)
SCORING_MODELS = (IMAGE_ENCODER, PREFERENCE, TXT2IMG_SCORE, CLIP_TEXT)
ALL_MODELS = (*COMPONENTS, TEXT_ENCODER_2, TXT2IMG, *SCORING_MODELS)
"""Every model name once (``UNET_XL`` is served as ``unet``)."""


def components(family: str) -> tuple[ModelContract, ...]:
    """The component models of a pipeline family (``FAMILIES``)."""
    return XL_COMPONENTS if family == "sdxl" else COMPONENTS

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
FAMILIES = ("sd", "sdxl")
"""Pipeline families served: ``sd`` (Stable Diffusion 1.x and 2.x: one CLIP text encoder) and
``sdxl`` (two text encoders, pooled text embeddings and size conditioning)."""
