"""The demo world's CLIP tokenizer, with a byte-pair vocabulary learned for its prompts.

The byte-level tokenizer in ``export.presets`` has no merges, so a prompt becomes one token per
letter and a small text encoder has to spell words out before it can mean anything by them. This
one learns merges from the procedural scene captions and from common text-to-image prompt words,
so those are mostly single tokens. It keeps all 256 byte symbols and their end-of-word forms, so
any text (non-ASCII included) is still encodable, and it is written in CLIP's format
(``vocab.json``, ``merges.txt``), so ``CLIPTokenizer`` loads it as it loads OpenAI's.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ppo_demo.scenes import caption, sample_scene
from ppo_server.export.builders import _byte_level_alphabet

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

logger = logging.getLogger(__name__)

MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
PROMPT_REPEATS = 50
"""How many times the prompt-word list is in the corpus, so its words are not outvoted by captions."""

PROMPT_WORDS: tuple[str, ...] = (
    # subjects
    "portrait", "landscape", "cityscape", "city", "street", "forest", "jungle", "desert", "castle",
    "lighthouse", "cathedral", "temple", "village", "house", "cottage", "tower", "bridge", "river",
    "lake", "waterfall", "ocean", "sea", "beach", "island", "mountain", "mountains", "valley",
    "canyon", "cave", "volcano", "glacier", "meadow", "garden", "field", "flower", "flowers", "rose",
    "tree", "trees", "sunflower", "cherry blossom", "mushroom", "cat", "dog", "horse", "wolf", "fox",
    "lion", "tiger", "bear", "owl", "eagle", "bird", "butterfly", "dragon", "unicorn", "phoenix",
    "fish", "whale", "deer", "rabbit", "robot", "astronaut", "spaceship", "space station", "planet",
    "moon", "sun", "stars", "galaxy", "nebula", "sky", "clouds", "rain", "snow", "storm", "fog",
    "sunset", "sunrise", "night", "woman", "man", "girl", "boy", "child", "old man", "warrior",
    "knight", "wizard", "witch", "princess", "king", "queen", "samurai", "ninja", "pirate",
    "soldier", "cyborg", "alien", "monster", "creature", "ghost", "skull", "angel", "demon", "fairy",
    "elf", "mermaid", "car", "train", "airplane", "ship", "boat", "bicycle", "motorcycle",
    "building", "skyscraper", "ruins", "library", "kitchen", "bedroom", "cafe", "restaurant",
    "market", "interior", "room", "window", "door", "food", "fruit", "cake", "coffee", "tea", "book",
    "sword", "armor", "crown", "helmet", "mask", "face", "eyes", "hands", "hair", "dress", "costume",
    "character", "people", "crowd", "family", "animal", "animals", "landscape painting", "still life",
    # styles and media
    "oil painting", "watercolor", "acrylic painting", "digital art", "digital painting",
    "concept art", "anime", "manga", "cartoon", "comic book", "illustration", "sketch",
    "pencil drawing", "charcoal drawing", "ink drawing", "line art", "photorealistic",
    "hyperrealistic", "realistic", "photograph", "photography", "photo", "3d render",
    "octane render", "unreal engine", "blender", "cgi", "pixel art", "low poly", "isometric",
    "voxel art", "vector art", "flat design", "pop art", "art nouveau", "art deco",
    "impressionism", "impressionist", "expressionism", "surrealism", "cubism", "baroque",
    "renaissance", "gothic", "steampunk", "cyberpunk", "vaporwave", "synthwave", "fantasy",
    "sci-fi", "science fiction", "studio ghibli", "stained glass", "mosaic", "graffiti",
    "street art", "papercraft", "origami", "claymation", "sculpture", "tarot card", "poster",
    "album cover", "storybook", "retro", "vintage", "futuristic", "medieval", "victorian",
    "painting", "drawing", "artwork", "render", "style", "artist", "matte painting", "gouache",
    "pastel drawing", "woodcut", "engraving", "minimalism",
    # quality boosters
    "highly detailed", "ultra detailed", "extremely detailed", "4k", "8k", "hd", "uhd",
    "high resolution", "masterpiece", "best quality", "high quality", "award winning",
    "trending on artstation", "featured on pixiv", "artstation", "deviantart", "behance",
    "sharp focus", "intricate", "intricate details", "elegant", "beautiful", "stunning",
    "gorgeous", "epic", "professional", "polished", "clean", "smooth", "crisp", "ornate",
    "fine details", "detailed", "hyperdetailed", "quality", "amazing", "perfect",
    # lighting
    "cinematic lighting", "cinematic", "golden hour", "blue hour", "volumetric light",
    "volumetric lighting", "god rays", "studio lighting", "neon", "neon lights", "soft light",
    "soft lighting", "hard light", "rim light", "backlight", "backlit", "dramatic lighting",
    "natural light", "ambient occlusion", "global illumination", "ray tracing",
    "subsurface scattering", "glowing", "glow", "bioluminescent", "moonlight", "sunlight",
    "candlelight", "firelight", "lens flare", "chiaroscuro", "shadows", "reflections",
    "light", "lighting", "illuminated", "rays",
    # camera
    "bokeh", "wide angle", "ultra wide", "fisheye", "macro", "telephoto", "35mm", "50mm",
    "85mm", "depth of field", "shallow depth of field", "tilt shift", "long exposure",
    "motion blur", "close up", "closeup", "extreme close up", "full body", "medium shot",
    "headshot", "aerial view", "drone shot", "birds eye view", "top down", "low angle",
    "high angle", "dutch angle", "kodak portra", "polaroid", "dslr", "canon", "nikon", "sony",
    "lens", "camera", "shot", "view", "exposure",
    # colour and mood
    "vibrant", "vivid", "colorful", "colourful", "pastel", "muted", "monochrome",
    "black and white", "sepia", "desaturated", "saturated", "warm tones", "cool tones",
    "teal and orange", "dreamy", "ethereal", "serene", "peaceful", "calm", "cozy",
    "whimsical", "mysterious", "eerie", "gloomy", "melancholic", "nostalgic", "romantic",
    "magical", "mystical", "majestic", "dramatic", "atmospheric", "minimalist", "minimal",
    "simple", "abstract", "chaotic", "surreal", "psychedelic", "gritty", "grungy", "cute",
    "kawaii", "creepy", "horror", "joyful", "energetic", "tranquil", "lush", "gold", "silver",
    "pink", "cyan", "magenta", "teal", "turquoise", "beige", "brown", "gray", "grey", "colors",
    "colours", "tones", "mood", "atmosphere",
    # composition
    "centered", "symmetrical", "symmetry", "asymmetrical", "rule of thirds", "golden ratio",
    "negative space", "foreground", "silhouette", "panorama", "panoramic", "wide shot",
    "composition", "framing", "leading lines", "perspective", "vanishing point", "layered",
    "detailed background", "simple background", "white background", "in the style of", "by",
    "trending", "featured", "full frame", "scene", "standing", "sitting", "floating", "flying",
    "walking", "looking at viewer", "from above", "from below", "behind", "inside", "outside",
    "above", "below", "under", "between", "around", "distant", "horizon",
    # materials and textures
    "glass", "metal", "chrome", "marble", "wood", "wooden", "stone", "crystal", "fabric", "silk",
    "velvet", "leather", "fur", "feathers", "water", "fire", "smoke", "ice", "lava", "liquid",
    "iridescent", "holographic", "translucent", "transparent", "metallic", "glossy", "matte",
    "rough", "textured", "texture", "paper", "canvas",
)


def scene_captions(seeds: Iterable[int]) -> Iterator[str]:
    """The caption ``scenes.example(seed)`` returns, without rendering the image."""
    for seed in seeds:
        rng = np.random.default_rng(seed)
        yield caption(sample_scene(rng), rng)


def _learn_merges(corpus: Iterable[str], vocab_size: int) -> list[tuple[str, str]]:
    """Byte-pair merges, in rank order, for a vocabulary of at most ``vocab_size`` tokens."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import CLIPTokenizer

    alphabet = _byte_level_alphabet()
    # CLIP's own normaliser and pre-tokeniser, so training splits words exactly as inference will.
    clip = CLIPTokenizer(vocab={BOS: 0, EOS: 1}, merges=[])
    model = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD))
    model.normalizer = clip.backend_tokenizer.normalizer
    model.pre_tokenizer = clip.backend_tokenizer.pre_tokenizer
    trainer = BpeTrainer(
        vocab_size=vocab_size - 2,  # BOS and EOS come last
        show_progress=False,
        initial_alphabet=alphabet,
        end_of_word_suffix=END_OF_WORD,
        # The trainer numbers end-of-word symbols in hash-map order and ranks equal-count merges by
        # those numbers, which differs run to run; declaring them up front fixes the numbering.
        special_tokens=[c + END_OF_WORD for c in alphabet],
    )
    model.train_from_iterator(corpus, trainer)
    merges = json.loads(model.to_str())["model"]["merges"]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in merges]  # "a b" (older tokenizers) or ["a", "b"]
    return [(pair[0], pair[1]) for pair in pairs]


def build_demo_tokenizer(
    folder: Path, *, vocab_size: int = 4096, caption_seeds: range = range(20000)
) -> CLIPTokenizer:
    """Learn the vocabulary, write it to ``folder`` in CLIP's format, and return it loaded from there.

    The vocabulary is the 256 byte symbols, the same with ``</w>``, the merged tokens in merge order,
    then ``<|startoftext|>`` and ``<|endoftext|>``; it has at most ``vocab_size`` entries (fewer when
    the corpus runs out of pairs to merge). The same arguments give byte-identical files.
    """
    from transformers import CLIPTokenizer

    start = time.perf_counter()
    folder = Path(folder)
    alphabet = _byte_level_alphabet()
    base = [*alphabet, *(c + END_OF_WORD for c in alphabet)]
    if vocab_size < len(base) + 2:
        raise ValueError(f"vocab_size must be at least {len(base) + 2}, got {vocab_size}")
    corpus = itertools.chain(scene_captions(caption_seeds), itertools.repeat(", ".join(PROMPT_WORDS), PROMPT_REPEATS))
    merges = _learn_merges(corpus, vocab_size)
    tokens = dict.fromkeys(base)
    tokens.update(dict.fromkeys(a + b for a, b in merges))
    tokens.update(dict.fromkeys((BOS, EOS)))
    vocab = {token: i for i, token in enumerate(tokens)}

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_LENGTH).save_pretrained(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    logger.info(
        "demo tokenizer: %d tokens (%d merges) from %d captions in %.1f s, saved to %s",
        len(vocab), len(merges), len(caption_seeds), time.perf_counter() - start, folder,
    )
    return tokenizer
