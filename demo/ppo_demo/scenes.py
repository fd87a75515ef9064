"""Procedural captioned scenes: the demo world's stand-in for photographs and their prompts.

A scene is a background (colour, pattern), one to three objects (shape, colour, size, position,
fill) and global traits (brightness, warmth, blur, grain). ``render`` draws it at 64x64 and
``caption`` describes it with a small grammar (synonyms, varied word order). Everything is
deterministic from a seed, and only numpy and Pillow are needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIDE = 64
_SUPERSAMPLE = 4

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (240, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 215),
    "purple": (140, 50, 190),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = {"small": 0.22, "medium": 0.34, "large": 0.48}
"""Object side as a fraction of the image side."""
PATTERNS = ("plain", "stripes", "dots", "checker", "gradient")
FILLS = ("solid", "outline")
BRIGHTNESS = {"dark": 0.55, "normal": 1.0, "bright": 1.3}
WARMTH = {"cool": -1, "neutral": 0, "warm": 1}
BLUR = ("sharp", "blurry")
GRAIN = ("clean", "grainy")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float
    """Centre, as a fraction of the width (0 left, 1 right)."""
    y: float
    fill: str

    @property
    def area(self) -> float:
        return SIZES[self.size] ** 2


@dataclass(frozen=True)
class Scene:
    background: str
    pattern: str
    objects: tuple[SceneObject, ...]
    brightness: str = "normal"
    warmth: str = "neutral"
    blur: str = "sharp"
    grain: str = "clean"

    @property
    def main(self) -> SceneObject:
        """The largest object (the first of equals): the caption's subject."""
        return max(self.objects, key=lambda o: (o.area, -self.objects.index(o)))

    @property
    def main_is_visible(self) -> bool:
        """Whether the pixels show which object is the main one: no other object is as large.

        When one is, only the caption's word order names the main object, and no judge of the
        image alone can tell it from its equal."""
        area = self.main.area
        return sum(o.area == area for o in self.objects) == 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        objects = tuple(SceneObject(**o) for o in data["objects"])
        return cls(**{**data, "objects": objects})


def _pick(rng: np.random.Generator, options: Sequence, p: Sequence[float] | None = None):
    return options[int(rng.choice(len(options), p=p))]


def sample_scene(rng: np.random.Generator) -> Scene:
    background = _pick(rng, list(COLOURS))
    count = _pick(rng, (1, 2, 3), p=(0.5, 0.3, 0.2))
    objects: list[SceneObject] = []
    for i in range(count):
        size = "large" if i == 0 and count == 1 and rng.random() < 0.5 else _pick(rng, list(SIZES))
        if i > 0 and SIZES[size] >= SIZES[objects[0].size]:
            size = "small"  # keep the first object the main one
        colour = _pick(rng, [c for c in COLOURS if c != background])
        half = SIZES[size] / 2
        objects.append(
            SceneObject(
                shape=_pick(rng, SHAPES),
                colour=colour,
                size=size,
                x=float(rng.uniform(half, 1 - half)),
                y=float(rng.uniform(half, 1 - half)),
                fill=_pick(rng, FILLS, p=(0.75, 0.25)),
            )
        )
    return Scene(
        background=background,
        pattern=_pick(rng, PATTERNS, p=(0.4, 0.15, 0.15, 0.15, 0.15)),
        objects=tuple(objects),
        brightness=_pick(rng, list(BRIGHTNESS), p=(0.2, 0.6, 0.2)),
        warmth=_pick(rng, list(WARMTH), p=(0.2, 0.6, 0.2)),
        blur=_pick(rng, BLUR, p=(0.8, 0.2)),
        grain=_pick(rng, GRAIN, p=(0.8, 0.2)),
    )


def _shade(rgb: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """Lighter (amount > 0) or darker (< 0) version of a colour, for patterns."""
    target = 255 if amount > 0 else 0

    def towards_target(c: int) -> int:
        return int(round(c + (target - c) * abs(amount)))

    red, green, blue = rgb
    return towards_target(red), towards_target(green), towards_target(blue)


def _draw_background(draw: ImageDraw.ImageDraw, scene: Scene, side: int) -> None:
    base = COLOURS[scene.background]
    second = _shade(base, -0.35 if sum(base) > 380 else 0.35)
    draw.rectangle([0, 0, side, side], fill=base)
    step = side // 8
    if scene.pattern == "stripes":
        for x in range(0, side, 2 * step):
            draw.rectangle([x, 0, x + step - 1, side], fill=second)
    elif scene.pattern == "dots":
        r = step // 4
        for cx in range(step // 2, side, step):
            for cy in range(step // 2, side, step):
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=second)
    elif scene.pattern == "checker":
        for i, x in enumerate(range(0, side, step)):
            for j, y in enumerate(range(0, side, step)):
                if (i + j) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=second)
    elif scene.pattern == "gradient":
        for y in range(side):
            t = y / (side - 1)
            draw.line([0, y, side, y], fill=tuple(int(round(a + (b - a) * t)) for a, b in zip(base, second, strict=True)))


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int) -> None:
    colour = COLOURS[obj.colour]
    half = SIZES[obj.size] * side / 2
    cx, cy = obj.x * side, obj.y * side
    box = [cx - half, cy - half, cx + half, cy + half]
    width = max(1, int(side * 0.045))
    fill, outline = (colour, None) if obj.fill == "solid" else (None, colour)
    if obj.shape == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    elif obj.shape == "square":
        draw.rectangle(box, fill=fill, outline=outline, width=width)
    elif obj.shape in ("triangle", "cross"):
        if obj.shape == "triangle":
            points = [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
        else:
            a = half / 3
            corners = [(a, half), (a, a), (half, a), (half, -a), (a, -a), (a, -half)]
            points = [(cx + dx, cy + dy) for dx, dy in corners] + [(cx - dx, cy - dy) for dx, dy in corners]
        if fill:
            draw.polygon(points, fill=fill)
        else:
            draw.line([*points, points[0]], fill=outline, width=width, joint="curve")
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(scene: Scene, *, seed: int = 0, side: int = SIDE) -> np.ndarray:
    """Draw ``scene`` as an RGB uint8 array; ``seed`` only drives the grain."""
    big = side * _SUPERSAMPLE
    image = Image.new("RGB", (big, big))
    draw = ImageDraw.Draw(image)
    _draw_background(draw, scene, big)
    for obj in scene.objects:
        _draw_object(draw, obj, big)
    image = image.resize((side, side), Image.Resampling.LANCZOS)
    if scene.blur == "blurry":
        image = image.filter(ImageFilter.GaussianBlur(radius=side / 40))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * BRIGHTNESS[scene.brightness]
    warmth = WARMTH[scene.warmth]
    pixels[..., 0] += 28 * warmth
    pixels[..., 2] -= 28 * warmth
    if scene.grain == "grainy":
        pixels += np.random.default_rng(seed).normal(0.0, 14.0, pixels.shape)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


# --- captions ---

_COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden", "lemon yellow"),
    "green": ("green", "emerald", "grass green"),
    "blue": ("blue", "azure", "cobalt"),
    "purple": ("purple", "violet"),
    "white": ("white", "ivory", "snow white"),
    "black": ("black", "jet black", "ebony"),
}
_SHAPE_WORDS = {
    "circle": ("circle", "disc", "round shape", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid shape", "wedge"),
    "cross": ("cross", "plus sign", "plus shape"),
}
_SIZE_WORDS = {"small": ("small", "tiny", "little"), "medium": ("medium", "mid-sized", ""), "large": ("large", "big", "huge")}
_FILL_WORDS = {"solid": ("", "solid", "filled"), "outline": ("outlined", "hollow", "outline of a")}
_PATTERN_WORDS = {
    "plain": ("", "plain", "flat"),
    "stripes": ("striped", "stripy"),
    "dots": ("dotted", "polka dot", "spotted"),
    "checker": ("checkered", "checkerboard", "tiled"),
    "gradient": ("gradient", "fading"),
}
_TRAIT_WORDS = {
    ("brightness", "dark"): ("dark", "dim", "moody", "low-key"),
    ("brightness", "bright"): ("bright", "luminous", "high-key", "sunlit"),
    ("warmth", "warm"): ("warm", "golden hour", "warm-toned"),
    ("warmth", "cool"): ("cool", "cold", "blue-toned"),
    ("blur", "blurry"): ("blurry", "soft focus", "out of focus"),
    ("grain", "grainy"): ("grainy", "noisy", "film grain"),
}


def _position_words(obj: SceneObject) -> str:
    vertical = "top" if obj.y < 0.38 else "bottom" if obj.y > 0.62 else ""
    horizontal = "left" if obj.x < 0.38 else "right" if obj.x > 0.62 else ""
    if vertical and horizontal:
        return f"in the {vertical} {horizontal}"
    if vertical or horizontal:
        return f"at the {vertical or horizontal}"
    return "in the center"


def _words(rng: np.random.Generator, *parts: str) -> str:
    return " ".join(p for p in parts if p)


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _object_phrase(rng: np.random.Generator, obj: SceneObject, with_position: bool) -> str:
    fill = _pick(rng, _FILL_WORDS[obj.fill])
    colour, shape = _pick(rng, _COLOUR_WORDS[obj.colour]), _pick(rng, _SHAPE_WORDS[obj.shape])
    size = _pick(rng, _SIZE_WORDS[obj.size]) if rng.random() < 0.7 else ""
    if fill == "outline of a":
        phrase = "the outline of " + _article(_words(rng, size, colour, shape))
    else:
        phrase = _article(_words(rng, size, fill, colour, shape))
    if with_position:
        phrase += " " + _position_words(obj)
    return phrase


def _background_phrase(rng: np.random.Generator, scene: Scene) -> str:
    colour = _pick(rng, _COLOUR_WORDS[scene.background])
    pattern = _pick(rng, _PATTERN_WORDS[scene.pattern])
    noun = _pick(rng, ("background", "backdrop"))
    return f"{_pick(rng, ('on', 'against', 'over'))} {_article(_words(rng, colour, pattern, noun))}"


def _traits(rng: np.random.Generator, scene: Scene) -> list[str]:
    traits = []
    for key in (("brightness", scene.brightness), ("warmth", scene.warmth), ("blur", scene.blur), ("grain", scene.grain)):
        if key in _TRAIT_WORDS:
            traits.append(_pick(rng, _TRAIT_WORDS[key]))
    order = rng.permutation(len(traits))
    return [traits[i] for i in order]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One of many captions of ``scene``; the main object and the background colour are always named."""
    main = scene.main
    subject = _object_phrase(rng, main, with_position=rng.random() < 0.4)
    others = [o for o in scene.objects if o is not main]
    extras = [_object_phrase(rng, o, with_position=rng.random() < 0.3) for o in others if rng.random() < 0.7]
    if extras:
        subject += " " + _pick(rng, ("and", "with", "next to")) + " " + " and ".join(extras)
    background = _background_phrase(rng, scene)
    traits = _traits(rng, scene)
    style = ", ".join(traits)
    template = int(rng.integers(4))
    if template == 0:
        text = f"{subject} {background}" + (f", {style}" if style else "")
    elif template == 1:
        text = (f"{style} image of " if style else "") + f"{subject} {background}"
    elif template == 2:
        text = f"{background[0].upper()}{background[1:]}, {subject}" + (f", {style}" if style else "")
    else:
        text = (f"{style} " if style else "") + f"picture: {subject} {background}"
    return " ".join(text.split())


def example(seed: int) -> tuple[np.ndarray, str, Scene]:
    """The image, a caption and the scene for one seed: the unit every data set here is made of."""
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng)
    return render(scene, seed=seed), caption(scene, rng), scene
