"""Export the scoring side of a repository: a CLIP image encoder, the preference model, and the
generate-and-score model that chains ``txt2img`` -> ``image_encoder`` -> a user's preference head.

The image encoder comes from any ``CLIPModel`` checkpoint folder (a real one or the demo CLIP); its
ONNX file's hash becomes the ``encoder_id`` parameter, which clients use as the key of their
embedding caches, so embeddings of different encoders never mix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from ppo_client import contract
from ppo_client.contract import (
    ClipTextParameters,
    ComponentParameters,
    HeadCacheParameters,
    ImageEncoderParameters,
    ServedPipeline,
)
from ppo_server.errors import ExportError
from ppo_server.export import specs as export_specs
from ppo_server.export.checkpoint import first_line
from ppo_server.export.model_config import ServingOptions
from ppo_server.export.onnx_exporter import ExportReport, export_onnx
from ppo_server.export.options import DEFAULT_OPTIONS, ExportOptions
from ppo_server.export.targets import ONNX_FILE, ComponentWriter, write_python_model, writer_for

logger = logging.getLogger(__name__)

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
            f"cannot load a CLIP model from {path}: {first_line(exc)}. Pass a folder written by "
            "CLIPModel.save_pretrained (config.json with a vision_config)."
        ) from None
    mean, std = tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD)
    processor = Path(path) / "preprocessor_config.json"
    if processor.exists():  # read as data: the image processor classes would want torchvision
        config = json.loads(processor.read_text())
        mean, std = tuple(config.get("image_mean", mean)), tuple(config.get("image_std", std))
    return model, mean, std


def export_scoring(
    clip: str,
    out: Path,
    options: ExportOptions = DEFAULT_OPTIONS,
    *,
    served: ServedPipeline | None = None,
    writer: ComponentWriter | None = None,
) -> tuple[ExportReport, ExportReport]:
    """Write ``image_encoder``, ``preference`` and ``clip_text`` under ``out`` (and ``txt2img_score``
    when the repository generates images too: ``served`` is what its ``txt2img`` serves); returns
    the two ONNX export reports."""
    writer = writer or writer_for(options)
    model, mean, std = load_clip(clip)
    dims = export_specs.ExportDims(
        batch=2, sequence_length=0, hidden_size=0, vocab_size=0, latent_channels=0, latent_height=0,
        latent_width=0, image_side=int(model.config.vision_config.image_size),
    )
    encoder_dir = Path(out) / contract.IMAGE_ENCODER.name
    onnx_path = encoder_dir / "1" / ONNX_FILE
    pixel_statistics = {"mean": list(mean), "std": list(std)}
    report = export_onnx(export_specs.IMAGE_ENCODER, model, dims, onnx_path, wrapper_kwargs=pixel_statistics)
    encoder = ImageEncoderParameters(
        encoder_id=f"{Path(clip).name or 'clip'}-{_file_digest(onnx_path)[:16]}",
        embedding_dim=int(model.config.projection_dim),
    )
    encoder_serving = _with(options.component_serving, encoder.to_parameters())
    writer.write(
        export_specs.IMAGE_ENCODER, encoder_dir, encoder_serving, module=model, wrapper_kwargs=pixel_statistics
    )

    head_cache = HeadCacheParameters(options.head_cache_bytes).to_parameters()
    write_python_model(contract.PREFERENCE, export_specs.PREFERENCE.backend, Path(out) / contract.PREFERENCE.name,
                       _with(options.preference_serving, head_cache))

    text_report = _export_clip_text(clip, model, Path(out) / contract.CLIP_TEXT.name, options)

    if served is not None:
        score_serving = _with(options.txt2img_serving, {**served.to_parameters(), **head_cache})
        write_python_model(contract.TXT2IMG_SCORE, export_specs.TXT2IMG_SCORE.backend,
                           Path(out) / contract.TXT2IMG_SCORE.name, score_serving)
    logger.info("exported the image encoder %s (%d-d embeddings)", encoder.encoder_id, encoder.embedding_dim)
    return report, text_report


def _with(serving: ServingOptions, parameters: dict[str, str]) -> ServingOptions:
    return dataclasses.replace(serving, parameters={**serving.parameters, **parameters})


def _export_clip_text(clip: str, model, model_dir: Path, options: ExportOptions) -> ExportReport:
    """The text tower as ``clip_text``: the tokenizer is saved beside the graph, tokenizing happens in
    the server, so clients send plain texts. It runs onnxruntime in a python model in every target."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(clip)
    except Exception as exc:
        raise ExportError(f"the CLIP folder {clip!r} has no usable tokenizer ({exc}); save one beside the model") from exc
    max_tokens = min(tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
    text = ClipTextParameters(max_tokens=int(max_tokens))
    dims = export_specs.ExportDims(
        batch=2, sequence_length=text.max_tokens, hidden_size=0, vocab_size=int(model.config.text_config.vocab_size),
        latent_channels=0, latent_height=0, latent_width=0,
    )
    report = export_onnx(export_specs.CLIP_TEXT_GRAPH, model, dims, model_dir / "1" / ONNX_FILE)
    tokenizer.save_pretrained(model_dir / "1" / "tokenizer")
    own = ComponentParameters(options.intra_op_threads, contract.CLIP_TEXT.name in options.spin_models)
    parameters = {**own.to_parameters(), **text.to_parameters()}
    serving = _with(options.component_serving, parameters)
    write_python_model(contract.CLIP_TEXT, export_specs.CLIP_TEXT.backend, model_dir, serving)
    return report


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
