"""Perceptual attributes measured from the pixels of any RGB image: what virtual users look at.

A virtual user's taste is a function of these numbers, so they are computed for *any* RGB image
(a procedural scene or a generated one), never from scene metadata. Images of another size are first
resized to 64x64 (Lanczos, as ``scenes.render`` downsamples), so every attribute is on the scale of the
population statistics personas standardize with. Each lies in [0, 1], clipped where the natural scale
has no hard upper bound:

==================  =====================================================================================
``brightness``      mean luma / 255.
``warmth``          0.5 + mean(R - B) / 510: 0 all blue, 0.5 neutral, 1 all red.
``saturation``      mean HSV saturation (max - min) / max.
``contrast``        standard deviation of luma / 127.5.
``sharpness``       steepness of edges regardless of their contrast: among strong 2-pixel steps, the share
                    already covered by one pixel, mapped so a smooth ramp is 0 and a crisp step 1 (0 if
                    there is no strong edge); measured along the image's main colour axis after a 3x3
                    median filter, so grain is not detail and red/purple edges count though equal in luma.
``grain``           median absolute difference between luma and its 3x3 median, / 12.
``colourfulness``   Hasler & Suesstrunk colourfulness of the opponent channels, / 150.
``object_area``     fraction of foreground pixels: pixels far (RGB distance) from every background colour,
                    background colours being those a border frame shows on two opposite sides (an object
                    never spans the image, a background pattern does).
``object_count``    foreground blobs (4-connected) of at least 12 pixels, / 4.
``clutter``         edge density: fraction of pixels whose smoothed colour gradient is strong, * 2.
``pattern_energy``  high-frequency energy of the 6-pixel border frame: its mean smoothed colour gradient / 24.
``roundness``       intersection over union of the largest blob with the ellipse inscribed in its bounding
                    box: 1 for a disc, about 0.8 for a square, lower for triangles, crosses, outlines.
``squareness``      area of the largest blob / area of its bounding box: 1 for a square, 0.5 for a triangle.
``colour_count``    palette colours covering at least 4% of the image, / 8.
``red`` .. ``black``  fraction of pixels whose nearest palette colour is that one (these 8 sum to 1).
==================  =====================================================================================

Colour-dependent steps (object area and count, shape, clutter, pattern energy, palette) are
brightness-robust: pixels are divided by an image gain (98th percentile of the brightest channel / 240,
kept in [0.5, 1]) first, so a darkened scene keeps its palette and its foreground. Palette assignment uses
a lookup table over 32 levels per channel: low-saturation pixels (< 0.3) are white or black by value,
very dark ones (value < 0.33) black whatever their tint, the others take the palette colour nearest in
hue. Only numpy and Pillow; about 1.2-1.5 ms per 64x64 image on one core.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image

PALETTE: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
ATTRIBUTES: tuple[str, ...] = (
    "brightness",
    "warmth",
    "saturation",
    "contrast",
    "sharpness",
    "grain",
    "colourfulness",
    "object_area",
    "object_count",
    "clutter",
    "pattern_energy",
    "roundness",
    "squareness",
    "colour_count",
    *PALETTE,
)
_COLUMN = {name: i for i, name in enumerate(ATTRIBUTES)}

SIDE = 64
"""Images are measured at SIDExSIDE, the size of procedural scenes (others are resized first)."""
_FRAME = 6
"""Border frame width in pixels: wide enough to contain a row of pattern dots."""
_FOREGROUND_DISTANCE = 55.0
"""RGB distance (after gain) from every background colour beyond which a pixel is foreground."""
_MIN_BLOB = 12
"""Blobs smaller than this many pixels are specks, not objects."""
_EDGE = 14.0
"""Smoothed colour gradient (root mean square over channels, 0-255 per pixel) that counts as an edge."""
_CHROMA_HUES = np.array([0.0, 31.0, 54.0, 129.0, 224.0, 282.0])
"""Hues in degrees of the chromatic palette colours red .. purple as ``scenes.COLOURS`` draws them."""
_MEDIAN9 = (
    (1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8),
    (0, 3), (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2),
)  # fmt: skip
"""Compare-exchange network whose element 4 ends as the median of 9 (checked exhaustively on 0/1 inputs)."""


def _palette_table() -> np.ndarray:
    """Palette index for every colour quantized to 32 levels per channel (bin centres), as a flat LUT."""
    levels = np.arange(32, dtype=np.float64) * 8 + 4
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    top = np.maximum(np.maximum(r, g), b)
    saturation = (top - np.minimum(np.minimum(r, g), b)) / top
    hue = np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)) % 360.0
    gap = np.abs(hue[..., None] - _CHROMA_HUES)
    label = np.minimum(gap, 360.0 - gap).argmin(axis=-1)
    label = np.where(saturation < 0.3, np.where(top >= 0.45 * 255, 6, 7), label)
    label = np.where(top < 0.33 * 255, 7, label)  # a tint on a dark pixel (e.g. cool black) is still black
    return label.astype(np.int8).ravel()


_PALETTE_LUT = _palette_table()


def _canonical(image: np.ndarray | Image.Image) -> np.ndarray:
    """``image`` as uint8 SIDExSIDEx3; float arrays are read as 0-1 if their maximum is at most 1.

    Other sizes are resized (Lanczos, as ``scenes.render`` downsamples) so that every attribute is on
    the scale of the population statistics personas standardize with. Roundness and squareness are
    invariant to the aspect change.
    """
    if isinstance(image, Image.Image):
        picture = image.convert("RGB")
    else:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {array.shape}")
        if array.dtype != np.uint8:
            values = array.astype(np.float64)
            if np.issubdtype(array.dtype, np.floating) and values.max(initial=0.0) <= 1.0:
                values = values * 255.0
            array = np.clip(np.round(values), 0, 255).astype(np.uint8)
        if array.shape[:2] == (SIDE, SIDE):
            return array
        picture = Image.fromarray(array)
    if picture.size != (SIDE, SIDE):
        picture = picture.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def _shifts(a: np.ndarray) -> list[np.ndarray]:
    """The 9 edge-replicated 3x3-neighbourhood views of ``a`` (first two axes are the image)."""
    h, w = a.shape[:2]
    padded = np.empty((h + 2, w + 2) + a.shape[2:], dtype=a.dtype)  # np.pad is slow for tiny arrays
    padded[1:-1, 1:-1] = a
    padded[0, 1:-1], padded[-1, 1:-1] = a[0], a[-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    return [padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]


def _median3(a: np.ndarray) -> np.ndarray:
    values = _shifts(a)
    for i, j in _MEDIAN9:
        values[i], values[j] = np.minimum(values[i], values[j]), np.maximum(values[i], values[j])
    return values[4]


def _box3(a: np.ndarray) -> np.ndarray:
    views = _shifts(a)
    total = views[0].copy()
    for view in views[1:]:
        total += view
    return total / 9.0


def _frame_mask() -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    mask[:_FRAME] = mask[-_FRAME:] = True
    mask[:, :_FRAME] = mask[:, -_FRAME:] = True
    return mask


_FRAME_MASK = _frame_mask()


def _coarse_codes(rgb: np.ndarray) -> np.ndarray:
    q = np.minimum(rgb, 255.0).astype(np.int32) >> 5
    return (q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]


def _background_colours(smooth: np.ndarray) -> np.ndarray:
    """Mean colours of the coarse colour bins present on two opposite sides of the border frame."""
    codes = _coarse_codes(smooth)
    width = _FRAME
    sides = [codes[:width], codes[-width:], codes[:, :width], codes[:, -width:]]
    present = [np.bincount(side.ravel(), minlength=512) >= width for side in sides]
    keep = (present[0] & present[1]) | (present[2] & present[3])
    frame_codes, frame_pixels = codes[_FRAME_MASK], smooth[_FRAME_MASK]
    counts = np.bincount(frame_codes, minlength=512)
    if not keep.any():  # nothing repeats on opposite sides: take the commonest frame colour
        keep[np.argmax(counts)] = True
    sums = np.stack([np.bincount(frame_codes, weights=frame_pixels[:, c], minlength=512) for c in range(3)], 1)
    return sums[keep] / counts[keep, None]


def _foreground(normalized: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """Pixels far from every background colour, cleaned by a 3x3 majority vote."""
    background = _background_colours(smooth).astype(np.float32)
    pixels = normalized.reshape(-1, 3)
    norms = pixels[:, 0] ** 2 + pixels[:, 1] ** 2 + pixels[:, 2] ** 2
    squared = norms[:, None] - 2.0 * pixels @ background.T + (background**2).sum(1)[None, :]
    far = (squared.min(axis=1) > _FOREGROUND_DISTANCE**2).reshape(normalized.shape[:2])
    votes = _shifts(far.astype(np.uint8))
    total = votes[0].copy()
    for vote in votes[1:]:
        total += vote
    return total >= 5


def _blobs(mask: np.ndarray) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """4-connected components of ``mask`` as (area, runs), a run being (row, start, stop).

    Union-find over horizontal runs: a few hundred Python steps for a 64x64 mask, no scipy needed.
    """
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows_np, starts_np = np.nonzero(step == 1)
    _, stops_np = np.nonzero(step == -1)
    rows, starts, stops = rows_np.tolist(), starts_np.tolist(), stops_np.tolist()
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(r, i)
        last[r] = i
    for r, i in first.items():
        if r + 1 not in first:
            continue
        j = first[r + 1]
        while i <= last[r] and j <= last[r + 1]:
            if starts[i] < stops[j] and starts[j] < stops[i]:
                a, b = root(i), root(j)
                if a != b:
                    parent[a] = b
            if stops[i] < stops[j]:
                i += 1
            else:
                j += 1
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for i, run in enumerate(zip(rows, starts, stops, strict=True)):
        groups.setdefault(root(i), []).append(run)
    return [(sum(stop - start for _, start, stop in runs), runs) for runs in groups.values()]


def _shape(runs: list[tuple[int, int, int]], area: int) -> tuple[float, float]:
    """(roundness, squareness) of one blob: IoU with its bbox-inscribed ellipse, and bbox fill ratio."""
    top = min(r for r, _, _ in runs)
    left = min(s for _, s, _ in runs)
    height = max(r for r, _, _ in runs) - top + 1
    width = max(e for _, _, e in runs) - left
    blob = np.zeros((height, width), dtype=bool)
    for r, s, e in runs:
        blob[r - top, s - left : e - left] = True
    y = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    x = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    ellipse = (y[:, None] ** 2 + x[None, :] ** 2) <= 1.0
    inside = np.count_nonzero(blob & ellipse)
    roundness = inside / (area + np.count_nonzero(ellipse) - inside)
    return float(roundness), area / (height * width)


def _sharpness(rgb: np.ndarray) -> float:
    """Edge steepness along the image's main colour axis (first principal component of its pixels).

    A crisp (antialiased) edge puts most of a 2-pixel rise into one pixel, a blurred one spreads it: the
    mean share over strong 2-pixel rises, mapped from [0.5, 1] to [0, 1]. 0 when there is no strong edge.
    """
    pixels = rgb.reshape(-1, 3)
    _, vectors = np.linalg.eigh(np.cov(pixels, rowvar=False))
    channel = _median3(rgb @ vectors[:, -1].astype(np.float32))  # the median drops grain, keeps edges
    two_x = np.abs(channel[:, 2:] - channel[:, :-2])
    two_y = np.abs(channel[2:] - channel[:-2])
    one_x = np.abs(np.diff(channel, axis=1))
    one_y = np.abs(np.diff(channel, axis=0))
    two = np.concatenate([two_x.ravel(), two_y.ravel()])
    one = np.concatenate([np.maximum(one_x[:, 1:], one_x[:, :-1]).ravel(), np.maximum(one_y[1:], one_y[:-1]).ravel()])
    strong = two > 16.0
    if not strong.any():
        return 0.0
    return float(np.clip((one[strong] / two[strong]).mean() * 2.0 - 1.0, 0.0, 1.0))


def _gain(top: np.ndarray) -> float:
    """Exposure of the image: 98th percentile of the brightest channel (uint8) / 240, kept in [0.5, 1]."""
    cumulative = np.cumsum(np.bincount(top.ravel(), minlength=256))
    p98 = int(np.searchsorted(cumulative, 0.98 * top.size))
    return float(np.clip(p98 / 240.0, 0.5, 1.0))


def _vector(image: np.ndarray | Image.Image) -> np.ndarray:
    rgb8 = _canonical(image)
    rgb = rgb8.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    # Channel-wise maximum/minimum: numpy reductions over a length-3 last axis are slow.
    top = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    out = np.zeros(len(ATTRIBUTES))

    out[0] = luma.mean() / 255.0
    out[1] = 0.5 + (r - b).mean() / 510.0
    out[2] = ((top - low) / np.maximum(top, 1.0)).mean()
    out[3] = luma.std() / 127.5

    out[4] = _sharpness(rgb)
    out[5] = min(1.0, float(np.median(np.abs(luma - _median3(luma)))) / 12.0)

    rg = r - g
    yb = 0.5 * (r + g) - b
    out[6] = min(1.0, (np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 150.0)

    normalized = rgb / _gain(np.maximum(np.maximum(rgb8[..., 0], rgb8[..., 1]), rgb8[..., 2]))
    smooth = _box3(normalized)
    foreground = _foreground(normalized, smooth)
    out[7] = foreground.mean()
    blobs = [blob for blob in _blobs(foreground) if blob[0] >= _MIN_BLOB]
    out[8] = min(1.0, len(blobs) / 4.0)
    if blobs:
        area, runs = max(blobs, key=lambda blob: blob[0])
        out[11], out[12] = _shape(runs, area)

    # Gradients of the smoothed, gain-normalized colours: grain is averaged away, exposure does not
    # matter, and edges between colours of equal luma still count.
    gy, gx = np.gradient(smooth, axis=(0, 1))
    magnitude = np.sqrt(((gx**2 + gy**2).sum(axis=2)) / 3.0)
    out[9] = min(1.0, 2.0 * float((magnitude > _EDGE).mean()))
    out[10] = min(1.0, float(magnitude[_FRAME_MASK].mean()) / 24.0)

    q = np.minimum(normalized, 255.0).astype(np.int32) >> 3
    labels = _PALETTE_LUT[(q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]]
    fractions = np.bincount(labels.ravel(), minlength=len(PALETTE)) / labels.size
    out[13] = np.count_nonzero(fractions >= 0.04) / len(PALETTE)
    out[14:] = fractions
    return out


def measure(image: np.ndarray | Image.Image) -> dict[str, float]:
    """All attributes of one RGB image (uint8 HxWx3 array or PIL image), keyed and ordered as ``ATTRIBUTES``."""
    return dict(zip(ATTRIBUTES, _vector(image).tolist(), strict=True))


def measure_many(images: Iterable[np.ndarray | Image.Image]) -> np.ndarray:
    """Attributes of many images as a float array [n, len(ATTRIBUTES)], columns in ``ATTRIBUTES`` order."""
    rows = [_vector(image) for image in images]
    return np.stack(rows) if rows else np.zeros((0, len(ATTRIBUTES)))


def column(name: str) -> int:
    """Column of attribute ``name`` in ``measure_many`` output (KeyError names an unknown one)."""
    return _COLUMN[name]
