"""Export the scoring side of a repository: a CLIP image encoder, the preference model, and the
generate-and-score model that chains ``txt2img`` -> ``image_encoder`` -> a user's preference head.

The image encoder comes from any ``CLIPModel`` checkpoint folder (a real one or the demo CLIP); its
ONNX file's hash becomes the ``encoder_id`` parameter, which clients use as the key of their
embedding caches, so embeddings of different encoders never mix.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from pathlib import Path

from ppo_client import contract
from ppo_server.backends.user_models import CACHE_PARAMETER, DEFAULT_CACHE_BYTES
from ppo_server.errors import ExportError
from ppo_server.export import specs as export_specs
from ppo_server.export.model_config import ServingOptions, build_config, write_config
from ppo_server.export.onnx_exporter import ExportReport, export_onnx

logger = logging.getLogger(__name__)

ENCODER_ID_PARAMETER = "encoder_id"


def load_clip(path: str):
    """``CLIPModel`` plus its image processor's pixel statistics, with an error that says what to try."""
    import torch
    import transformers
    from transformers import CLIPModel
    from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    transformers.utils.logging.disable_progress_bar()
    try:
        model = CLIPModel.from_pretrained(path, dtype=torch.float32).eval()
    except Exception as exc:  # transformers raises OSError, ValueError...
        raise ExportError(
            f"cannot load a CLIP model from {path!r}: {exc}. Pass a folder written by "
            "CLIPModel.save_pretrained (config.json with a vision_config)."
        ) from exc
    mean, std = tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD)
    processor = Path(path) / "preprocessor_config.json"
    if processor.exists():  # read as data: the image processor classes would want torchvision
        config = json.loads(processor.read_text())
        mean, std = tuple(config.get("image_mean", mean)), tuple(config.get("image_std", std))
    return model, mean, std


def export_scoring(
    clip: str,
    out: Path,
    *,
    with_generation: bool,
    encoder_serving: ServingOptions = ServingOptions(),
    txt2img_serving: ServingOptions = ServingOptions(instance_count=2, max_queue_delay_us=5000),
    writer=None,
    head_cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> tuple[ExportReport, ExportReport]:
    """Write ``image_encoder`` and ``preference`` (and ``txt2img_score`` when the repository
    generates images too) and ``clip_text`` under ``out``; returns the two ONNX export reports."""
    from ppo_server.export.repository import ComponentWriter, write_shim

    writer = writer or ComponentWriter()
    model, mean, std = load_clip(clip)
    side = int(model.config.vision_config.image_size)
    spec = dataclasses.replace(export_specs.IMAGE_ENCODER, wrap=functools.partial(export_specs._ImageEncoder, mean=mean, std=std))
    dims = export_specs.ExportDims(
        batch=2, sequence_length=0, hidden_size=0, vocab_size=0, latent_channels=0, latent_height=0,
        latent_width=0, image_side=side,
    )
    encoder_dir = Path(out) / contract.IMAGE_ENCODER.name
    onnx_path = encoder_dir / "1" / "model.onnx"
    report = export_onnx(spec, model, dims, onnx_path)
    encoder_id = f"{Path(clip).name or 'clip'}-{_file_digest(onnx_path)[:16]}"
    parameters = {**encoder_serving.parameters, ENCODER_ID_PARAMETER: encoder_id, "embedding_dim": str(model.config.projection_dim)}
    writer.write(export_specs.IMAGE_ENCODER, encoder_dir, dataclasses.replace(encoder_serving, parameters=parameters),
                 module=model, wrapper_kwargs={"mean": list(mean), "std": list(std)})

    preference_dir = Path(out) / contract.PREFERENCE.name
    head_cache = {CACHE_PARAMETER: str(head_cache_bytes)}
    write_config(build_config(contract.PREFERENCE, ServingOptions(max_queue_delay_us=500, parameters=head_cache)), preference_dir)
    write_shim(preference_dir, contract.PREFERENCE.name)

    text_report = _export_clip_text(clip, model, Path(out) / contract.CLIP_TEXT.name, encoder_serving)

    if with_generation:
        score_dir = Path(out) / contract.TXT2IMG_SCORE.name
        score_serving = dataclasses.replace(txt2img_serving, parameters={**txt2img_serving.parameters, **head_cache})
        write_config(build_config(contract.TXT2IMG_SCORE, score_serving), score_dir)
        write_shim(score_dir, contract.TXT2IMG_SCORE.name)
    logger.info("exported the image encoder %s (%d-d embeddings)", encoder_id, model.config.projection_dim)
    return report, text_report


def _export_clip_text(clip: str, model, model_dir: Path, serving: ServingOptions) -> ExportReport:
    """The text tower as ``clip_text``: the tokenizer is saved beside the graph, tokenizing happens in
    the server, so clients send plain texts."""
    from transformers import AutoTokenizer

    from ppo_server.export.repository import write_shim

    try:
        tokenizer = AutoTokenizer.from_pretrained(clip)
    except Exception as exc:
        raise ExportError(f"the CLIP folder {clip!r} has no usable tokenizer ({exc}); save one beside the model") from exc
    max_tokens = int(min(tokenizer.model_max_length, model.config.text_config.max_position_embeddings))
    dims = export_specs.ExportDims(
        batch=2, sequence_length=max_tokens, hidden_size=0, vocab_size=int(model.config.text_config.vocab_size),
        latent_channels=0, latent_height=0, latent_width=0,
    )
    report = export_onnx(export_specs.CLIP_TEXT_GRAPH, model, dims, model_dir / "1" / "model.onnx")
    tokenizer.save_pretrained(model_dir / "1" / "tokenizer")
    parameters = {**serving.parameters, "max_tokens": str(max_tokens)}
    write_config(build_config(contract.CLIP_TEXT, dataclasses.replace(serving, parameters=parameters)), model_dir)
    write_shim(model_dir, contract.CLIP_TEXT.name)
    return report


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
