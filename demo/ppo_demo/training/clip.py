"""The demo CLIP: a small ``transformers`` CLIP trained contrastively on scene/caption pairs.

Its text tower is also the demo pipeline's text encoder (as CLIP ViT-L's is Stable Diffusion 1.5's),
and its image tower is the encoder the personalized scorers use.

Random captions differ in colours first, so plain contrastive training learns to ignore shape, and
then so does every model conditioned on this text tower. Two additions make the text tower encode
it (measured; the image tower still barely agrees with it on shape):
each image also meets a hard negative (its own caption, word for word, with one attribute of the
scene changed, mostly the main object's shape), and small linear heads read the main object's shape
and colour and the background colour off both towers' features during training (then dropped).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ppo_demo.scenes import COLOURS, SHAPES, Scene, caption
from ppo_demo.training.data import SceneSet, to_pixels
from ppo_demo.training.judge import HEADS, labels
from ppo_demo.training.training_loop import TrainConfig, Trainer

logger = logging.getLogger(__name__)

CONFIG = TrainConfig(steps=1500, batch=128, lr=1e-3, warmup=150, ema_decay=0.995)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
"""CLIP's own pixel statistics, so real CLIP checkpoints and this one share preprocessing."""
NEGATIVE_KINDS = ("shape", "shape", "shape", "colour", "background")
"""What a hard negative changes, drawn uniformly: shape is what plain contrastive training misses."""
ATTRIBUTE_WEIGHT = 0.5
"""Weight of the attribute heads' loss (per tower) next to the contrastive loss."""


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


def variants(scene: Scene, kind: str) -> list[Scene]:
    """Every scene that differs from ``scene`` only in ``kind``: main ``shape`` or ``colour``, or ``background``."""
    main = scene.main
    if kind == "background":
        taken = {o.colour for o in scene.objects} | {scene.background}
        return [replace(scene, background=c) for c in COLOURS if c not in taken]
    if kind == "shape":
        mains = [replace(main, shape=s) for s in SHAPES if s != main.shape]
    elif kind == "colour":
        mains = [replace(main, colour=c) for c in COLOURS if c not in (main.colour, scene.background)]
    else:
        raise ValueError(f"unknown attribute {kind!r}")
    return [replace(scene, objects=tuple(m if o is main else o for o in scene.objects)) for m in mains]


def altered(scene: Scene, rng: np.random.Generator) -> Scene:
    """``scene`` with one attribute changed, drawn from ``NEGATIVE_KINDS``."""
    options = variants(scene, NEGATIVE_KINDS[int(rng.integers(len(NEGATIVE_KINDS)))])
    return options[int(rng.integers(len(options)))]


def caption_pairs(data: SceneSet, indices: np.ndarray, step: int,
                  seed: int) -> tuple[list[str], list[str], list[Scene]]:
    """A caption of each scene, the same wording of an altered scene (same random draws), and those scenes."""
    captions, negatives, altered_scenes = [], [], []
    for j, i in enumerate(indices):
        scene = data.scenes[i]
        negative = altered(scene, np.random.default_rng([seed, step, 3, j]))
        captions.append(caption(scene, np.random.default_rng([seed, step, 1, j])))
        negatives.append(caption(negative, np.random.default_rng([seed, step, 1, j])))
        altered_scenes.append(negative)
    return captions, negatives, altered_scenes


class _WithAttributeHeads(nn.Module):
    """The CLIP being trained plus the linear attribute heads of each tower (not saved with it)."""

    def __init__(self, clip) -> None:
        super().__init__()
        self.clip = clip
        width = clip.config.projection_dim
        self.text_heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in HEADS.items()})
        self.image_heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in HEADS.items()})


def _attribute_loss(heads: nn.ModuleDict, features: torch.Tensor, scenes: list[Scene]) -> torch.Tensor:
    targets = labels(scenes)
    losses = (nn.functional.cross_entropy(heads[k](features), targets[k].to(features.device)) for k in heads)
    return sum(losses, start=torch.zeros((), device=features.device))


def train_clip(data: SceneSet, tokenizer, folder: Path, config: TrainConfig = CONFIG, device: str = "cpu"):
    torch.manual_seed(config.seed)
    model = _WithAttributeHeads(build_clip(tokenizer))
    trainer = Trainer("clip", model, config, folder / "checkpoints" / "clip", device)

    def loss_fn(step: int) -> torch.Tensor:
        indices = data.indices(step, config.batch, config.seed + 1)
        captions, negatives, altered_scenes = caption_pairs(data, indices, step, config.seed + 1)
        tokens = tokenizer(captions + negatives, padding=True, truncation=True, return_tensors="pt")
        pixels = normalize(data.pixels(indices, device))
        out = model.clip(input_ids=tokens.input_ids.to(device), pixel_values=pixels)
        targets = torch.arange(len(indices), device=device)
        # images choose among all captions, hard negatives included; captions choose among images
        image_loss = nn.functional.cross_entropy(out.logits_per_image, targets)
        text_loss = nn.functional.cross_entropy(out.logits_per_text[: len(indices)], targets)
        scenes = [data.scenes[i] for i in indices]
        attributes = (_attribute_loss(model.text_heads, out.text_embeds, scenes + altered_scenes)
                      + _attribute_loss(model.image_heads, out.image_embeds, scenes))
        return (image_loss + text_loss) / 2 + ATTRIBUTE_WEIGHT * attributes

    ema = trainer.run(loss_fn).clip.to("cpu")
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


@torch.no_grad()
def attribute_top1(model, tokenizer, images: np.ndarray, scenes: list[Scene], seed: int = 7) -> dict[str, float]:
    """How often an image picks its own caption over the same words with one attribute changed.

    Random captions rarely differ in one attribute only, so retrieval among them can be near perfect
    while the text tower ignores shape; this is the figure that shows it."""
    model.eval()
    pixels = normalize(to_pixels(images))
    image = nn.functional.normalize(_features(model.get_image_features(pixel_values=pixels)), dim=-1)
    result = {}
    for kind in ("shape", "colour", "background"):
        hits = 0
        for j, scene in enumerate(scenes):
            candidates = [scene, *variants(scene, kind)]
            texts = [caption(c, np.random.default_rng([seed, j])) for c in candidates]
            tokens = tokenizer(texts, padding=True, return_tensors="pt")
            text = nn.functional.normalize(_features(model.get_text_features(input_ids=tokens.input_ids)), dim=-1)
            hits += int((text @ image[j]).argmax() == 0)
        result[kind] = hits / max(len(scenes), 1)
    return result
