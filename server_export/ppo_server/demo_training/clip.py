"""The demo CLIP: a small ``transformers`` CLIP trained contrastively on scene/caption pairs.

Its text tower is also the demo pipeline's text encoder (as CLIP ViT-L's is Stable Diffusion 1.5's),
and its image tower is the encoder the personalized scorers use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ppo_client.demo.scenes import caption
from ppo_server.demo_training.data import SceneSet
from ppo_server.demo_training.training_loop import TrainConfig, Trainer

logger = logging.getLogger(__name__)

CONFIG = TrainConfig(steps=1500, batch=128, lr=1e-3, warmup=150, ema_decay=0.995)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
"""CLIP's own pixel statistics, so real CLIP checkpoints and this one share preprocessing."""


def build_clip(tokenizer):
    from transformers import CLIPConfig, CLIPModel

    text = dict(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(image_size=64, patch_size=8, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, num_channels=3)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=128))


def image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": 64}, do_center_crop=True, crop_size={"height": 64, "width": 64},
        do_normalize=True, image_mean=list(MEAN), image_std=list(STD), do_convert_rgb=True,
    )


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW (the data set's range) to CLIP's normalized pixels."""
    mean = torch.tensor(MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=pixels.device).view(1, 3, 1, 1)
    return ((pixels + 1) / 2 - mean) / std


def train_clip(data: SceneSet, tokenizer, folder: Path, config: TrainConfig = CONFIG, device: str = "cpu"):
    torch.manual_seed(config.seed)
    model = build_clip(tokenizer)
    trainer = Trainer("clip", model, config, folder / "checkpoints" / "clip", device)

    def loss_fn(step: int) -> torch.Tensor:
        indices = data.indices(step, config.batch, config.seed + 1)
        tokens = tokenizer(data.captions(indices, step, config.seed + 1), padding=True, truncation=True,
                           return_tensors="pt")
        pixels = normalize(data.pixels(indices, device))
        return model(input_ids=tokens.input_ids.to(device), pixel_values=pixels, return_loss=True).loss

    ema = trainer.run(loss_fn).to("cpu")
    ema.save_pretrained(folder / "clip")
    tokenizer.save_pretrained(folder / "clip")
    image_processor().save_pretrained(folder / "clip")
    return ema


def _features(output) -> torch.Tensor:
    """transformers 4 returns the projected features, transformers 5 an output holding them."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def retrieval_top1(model, tokenizer, data: SceneSet, *, group: int = 32, seed: int = 7) -> float:
    """Image-to-text top-1 accuracy among ``group`` captions (one of them the image's own)."""
    model.eval()
    rng = np.random.default_rng(seed)
    captions = [caption(s, rng) for s in data.scenes]
    hits = total = 0
    for start in range(0, len(data) - group + 1, group):
        indices = np.arange(start, start + group)
        tokens = tokenizer([captions[i] for i in indices], padding=True, return_tensors="pt")
        text = torch.nn.functional.normalize(_features(model.get_text_features(input_ids=tokens.input_ids)), dim=-1)
        image = _features(model.get_image_features(pixel_values=normalize(data.pixels(indices))))
        image = torch.nn.functional.normalize(image, dim=-1)
        hits += int((image @ text.T).argmax(dim=1).eq(torch.arange(group)).sum())
        total += group
    return hits / max(total, 1)
