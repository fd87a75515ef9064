"""Measure the demo world against its targets: prompt-following of the pipeline, CLIP retrieval."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ppo_demo.scenes import example
from ppo_demo.training.clip import attribute_top1, retrieval_top1
from ppo_demo.training.data import SceneSet
from ppo_demo.training.judge import HEADS, agreement, labels, load_judge
from ppo_demo.training.vae import vae_round_trip

logger = logging.getLogger(__name__)

HELD_OUT_FIRST = 1_000_000
"""Seeds of evaluation scenes; training uses seeds from 0, far below."""


def load_pipeline(models: Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(models / "pipeline", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(pipe, captions: list[str], seeds: list[int], *, steps: int = 20, guidance: float = 7.5,
             batch: int = 50) -> np.ndarray:
    images = []
    for start in range(0, len(captions), batch):
        chunk = slice(start, start + batch)
        out = pipe(captions[chunk], num_inference_steps=steps, guidance_scale=guidance, height=64, width=64,
                   generator=[torch.Generator().manual_seed(s) for s in seeds[chunk]], output_type="np").images
        images.append((out * 255).round().astype(np.uint8))
    return np.concatenate(images)


GUIDANCE_SWEEP = (1.5, 3.0, 5.0, 7.5)
"""Classifier-free guidance scales the prompt-following figures are also reported at."""
ACROSS_BATCHES_TOLERANCE = 8
"""Largest pixel difference (of 255) allowed between the same prompt and seed generated inside
batches of different sizes. Kernels differ with batch shape on every CPU (one measurement: at most
1/255 in 8 of 49,152 values), so only the same batch is expected to repeat bit for bit."""


def vae_ceiling(vae, judge_path: Path, count: int = 200) -> dict[str, float]:
    """The judge's agreement on held-out scenes after a round trip through ``vae``."""
    examples = [example(s) for s in range(HELD_OUT_FIRST, HELD_OUT_FIRST + count)]
    rendered = np.stack([e[0] for e in examples])
    return agreement(load_judge(judge_path).float(), vae_round_trip(vae, rendered), [e[2] for e in examples])


@torch.no_grad()
def _pooled(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    tokens = tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt")
    hidden = text_encoder(tokens.input_ids)[0]
    mask = tokens.attention_mask[..., None].float()
    return (hidden * mask).sum(1) / mask.sum(1)


def text_encoder_probe(text_encoder, tokenizer, *, train: int = 3000, test: int = 500) -> dict[str, float]:
    """Held-out accuracy of linear probes reading the caption's attributes off the text encoder.

    The UNet sees the prompt only through this encoder's hidden states, so an attribute these probes
    cannot read is one no amount of UNet training can make the images follow."""
    text_encoder = text_encoder.float().cpu().eval()
    fit = [example(s) for s in range(train)]
    held = [example(s) for s in range(HELD_OUT_FIRST, HELD_OUT_FIRST + test)]
    x_fit = _pooled(text_encoder, tokenizer, [e[1] for e in fit])
    x_held = _pooled(text_encoder, tokenizer, [e[1] for e in held])
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    x_fit, x_held = (x_fit - mean) / std, (x_held - mean) / std
    y_fit, y_held = labels([e[2] for e in fit]), labels([e[2] for e in held])
    result = {}
    for name, classes in HEADS.items():
        probe = _linear_probe(x_fit, y_fit[name], classes)
        result[name] = float((probe(x_held).argmax(1) == y_held[name]).float().mean())
    return result


def _linear_probe(x: torch.Tensor, y: torch.Tensor, classes: int) -> torch.nn.Linear:
    """A linear classifier of ``x`` into ``y``'s classes, fitted by L-BFGS with a little weight decay."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=300)

    def closure():
        optimizer.zero_grad()
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(probe(x), y) + 1e-3 * probe.weight.pow(2).sum()
            loss.backward()
        return loss

    optimizer.step(closure)
    return probe


def evaluate(models: Path, *, count: int = 200, steps: int = 20, guidance: float = 7.5,
             guidance_sweep: tuple[float, ...] = GUIDANCE_SWEEP) -> dict:
    from transformers import CLIPModel, CLIPTokenizer

    seeds = list(range(HELD_OUT_FIRST, HELD_OUT_FIRST + count))
    examples = [example(s) for s in seeds]
    rendered = np.stack([e[0] for e in examples])
    captions = [e[1] for e in examples]
    scenes = [e[2] for e in examples]
    judge = load_judge(models / "judge.pt").float()
    pipe = load_pipeline(models)
    generated = generate(pipe, captions, seeds, steps=steps, guidance=guidance)
    again = generate(pipe, captions[:4], seeds[:4], steps=steps, guidance=guidance)  # a batch of 4, twice
    repeat = generate(pipe, captions[:4], seeds[:4], steps=steps, guidance=guidance)
    across_batches = int(np.abs(generated[:4].astype(np.int16) - again.astype(np.int16)).max())
    clip = CLIPModel.from_pretrained(models / "clip", dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(models / "clip")
    held_out = SceneSet(max(count, 320), first=HELD_OUT_FIRST)
    by_guidance = {}  # the default scale's images are the ones generated above
    for scale in sorted({*guidance_sweep, guidance}):
        images = generated if scale == guidance else generate(pipe, captions, seeds, steps=steps, guidance=scale)
        by_guidance[str(scale)] = agreement(judge, images, scenes)
    report = {
        "captions": count,
        "steps": steps,
        "guidance": guidance,
        "generated_agreement": by_guidance[str(guidance)],
        "agreement_by_guidance": by_guidance,
        "judge_accuracy_on_rendered": agreement(judge, rendered, scenes),
        "judge_accuracy_on_vae_round_trip": agreement(judge, vae_round_trip(pipe.vae, rendered), scenes),
        "clip_retrieval_top1_of_32": retrieval_top1(clip, tokenizer, held_out),
        "clip_top1_against_one_attribute_changed": attribute_top1(clip, tokenizer, rendered, scenes),
        "text_encoder_linear_probe": text_encoder_probe(pipe.text_encoder, pipe.tokenizer,
                                                        train=15 * count, test=5 * count // 2),
        "same_batch_identical": bool(np.array_equal(again, repeat)),
        "across_batches_max_difference": across_batches,
        "across_batches_within_tolerance": across_batches <= ACROSS_BATCHES_TOLERANCE,
        "distinct_images": int(len({im.tobytes() for im in generated})),
    }
    logger.info("evaluation: %s", report)
    return report
