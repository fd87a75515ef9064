"""Pixel attributes respond in the right direction to controlled changes of a scene, for any image."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from ppo_demo.attributes import ATTRIBUTES, PALETTE, column, measure, measure_many
from ppo_demo.scenes import Scene, SceneObject, example, render

PLAIN = dict(pattern="plain", brightness="normal", warmth="neutral", blur="sharp", grain="clean")


def scene(background: str = "blue", *objects: SceneObject, **traits: str) -> Scene:
    objects = objects or (SceneObject("square", "yellow", "medium", 0.5, 0.5, "solid"),)
    return Scene(background=background, objects=objects, **{**PLAIN, **traits})


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    """A spread of procedural scenes reduced to neutral traits, to vary one trait at a time."""
    return [replace(example(seed)[2], **PLAIN) for seed in range(20)]


def test_attributes_are_named_once_in_a_fixed_order_and_measure_follows_it():
    assert len(ATTRIBUTES) == len(set(ATTRIBUTES)) == 22
    assert ATTRIBUTES[-8:] == PALETTE
    values = measure(example(0)[0])
    assert list(values) == list(ATTRIBUTES)
    assert column("sharpness") == ATTRIBUTES.index("sharpness")


def test_every_attribute_lies_in_the_unit_interval_and_palette_fractions_sum_to_one():
    matrix = measure_many(example(seed)[0] for seed in range(40))
    assert matrix.shape == (40, len(ATTRIBUTES))
    assert np.isfinite(matrix).all()
    assert matrix.min() >= 0.0 and matrix.max() <= 1.0
    np.testing.assert_allclose(matrix[:, -8:].sum(axis=1), 1.0)


def test_any_image_kind_and_size_is_measured_on_the_same_scale():
    image, _, sc = example(3)
    reference = measure_many([image])[0]
    np.testing.assert_allclose(measure_many([Image.fromarray(image)])[0], reference)
    np.testing.assert_allclose(measure_many([image.astype(np.float32) / 255.0])[0], reference, atol=1e-6)
    big = render(sc, seed=3, side=256)  # the same scene drawn at 256x256
    assert np.abs(measure_many([big])[0] - reference).max() < 0.2
    odd = measure(Image.fromarray(image).resize((90, 50)))
    assert all(0.0 <= v <= 1.0 for v in odd.values())
    assert measure_many([]).shape == (0, len(ATTRIBUTES))


def test_a_non_rgb_array_is_rejected():
    with pytest.raises(ValueError, match="RGB"):
        measure(np.zeros((64, 64), dtype=np.uint8))


def test_a_darker_copy_has_lower_brightness(scenes):
    for sc in scenes:
        normal, dark = measure(render(sc)), measure(render(replace(sc, brightness="dark")))
        assert dark["brightness"] < normal["brightness"] - 0.05
    image = render(scenes[0])
    assert measure((image * 0.6).astype(np.uint8))["brightness"] < measure(image)["brightness"]


def test_a_blurred_copy_has_lower_sharpness(scenes):
    for sc in scenes:
        crisp, blurry = measure(render(sc)), measure(render(replace(sc, blur="blurry")))
        assert blurry["sharpness"] < crisp["sharpness"] - 0.1
        grainy = replace(sc, grain="grainy")
        assert measure(render(replace(grainy, blur="blurry")))["sharpness"] < measure(render(grainy))["sharpness"]
    image = Image.fromarray(render(scenes[0]))
    assert measure(image.filter(ImageFilter.GaussianBlur(2)))["sharpness"] < measure(image)["sharpness"]


def test_a_plain_background_has_lower_pattern_energy_than_a_striped_one(scenes):
    for sc in scenes:
        plain = measure(render(sc))["pattern_energy"]
        for pattern in ("stripes", "dots", "checker"):
            assert measure(render(replace(sc, pattern=pattern)))["pattern_energy"] > plain + 0.05


def test_grain_warmth_saturation_and_contrast_move_the_right_way(scenes):
    for sc in scenes[:8]:
        base = measure(render(sc))
        assert measure(render(replace(sc, grain="grainy")))["grain"] > base["grain"] + 0.2
        warm, cool = (measure(render(replace(sc, warmth=w)))["warmth"] for w in ("warm", "cool"))
        assert warm > base["warmth"] > cool
    image = render(scenes[0])
    grey = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    assert measure(grey)["saturation"] < 0.02 < measure(image)["saturation"]
    assert measure(grey)["colourfulness"] < 0.02 < measure(image)["colourfulness"]
    flat = (image * 0.4 + image.mean() * 0.6).astype(np.uint8)
    assert measure(flat)["contrast"] < measure(image)["contrast"]


def test_object_measures_follow_size_count_and_shape():
    big = SceneObject("circle", "yellow", "large", 0.5, 0.5, "solid")
    small = replace(big, size="small")
    large_area = measure(render(scene("blue", big)))["object_area"]
    small_area = measure(render(scene("blue", small)))["object_area"]
    assert large_area == pytest.approx(0.48**2 * np.pi / 4, abs=0.03)
    assert small_area < large_area
    three = [replace(small, x=x, y=y) for x, y in ((0.2, 0.2), (0.5, 0.8), (0.8, 0.3))]
    assert measure(render(scene("blue", *three)))["object_count"] == pytest.approx(3 / 4)
    assert measure(render(scene("blue", small)))["object_count"] == pytest.approx(1 / 4)
    shapes = {s: measure(render(scene("green", replace(big, shape=s)))) for s in ("circle", "square", "triangle")}
    assert shapes["circle"]["roundness"] > shapes["square"]["roundness"] > shapes["triangle"]["roundness"]
    assert shapes["square"]["squareness"] > shapes["circle"]["squareness"] > shapes["triangle"]["squareness"]


def test_the_background_is_found_even_when_patterned_or_dark():
    obj = SceneObject("square", "yellow", "medium", 0.5, 0.5, "solid")
    expected = 0.34**2
    for pattern in ("plain", "stripes", "dots", "checker", "gradient"):
        for brightness in ("dark", "normal"):
            area = measure(render(scene("blue", obj, pattern=pattern, brightness=brightness)))["object_area"]
            assert area == pytest.approx(expected, abs=0.03), (pattern, brightness)


def test_palette_fractions_name_the_background_colour_even_in_a_dark_scene():
    obj = SceneObject("circle", "white", "small", 0.5, 0.5, "solid")
    for colour in PALETTE[:-1]:
        for brightness in ("dark", "normal", "bright"):
            values = measure(render(scene(colour, replace(obj, colour="black"), brightness=brightness)))
            assert max(PALETTE, key=values.get) == colour, (colour, brightness)
    values = measure(render(scene("black", obj)))
    assert max(PALETTE, key=values.get) == "black"


def test_measuring_is_fast_enough_for_rating_data():
    images = [example(seed)[0] for seed in range(100)]
    start = time.process_time()
    measure_many(images)
    per_second = len(images) / (time.process_time() - start)
    assert per_second > 200  # about 700/s on one idle core; the bound only catches gross regressions
