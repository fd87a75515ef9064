"""A description as a prior: the offline phrase split, and a zero-shot head on the demo CLIP."""

import numpy as np
import pytest

from ppo_client.piaa import methods as m
from ppo_client.piaa.description import Phrases, description_direction, split_description


@pytest.mark.parametrize("text,likes,dislikes", [
    ("I like dark, moody blue scenes; no yellow, no clutter", ("dark", "moody blue scenes"), ("yellow", "clutter")),
    ("I hate yellow, clutter but love blue", ("blue",), ("yellow", "clutter")),
    ("no yellow but blue circles", ("blue circles",), ("yellow",)),
    ("Bright red and green. Not blurry or grainy", ("bright red", "green"), ("blurry", "grainy")),
    ("I don't like squares and I prefer circles", ("circles",), ("squares",)),
    ("avoid clutter", (), ("clutter",)),
])
def test_a_description_splits_into_liked_and_disliked_phrases(text, likes, dislikes):
    assert split_description(text) == Phrases(likes, dislikes)


def test_the_direction_points_from_disliked_to_liked_and_a_missing_side_is_neutral():
    table = {"blue": [1.0, 0.0, 1.0], "yellow": [0.0, 1.0, 1.0], "an image": [0.0, 0.0, 1.0]}
    embed = lambda texts: np.array([table[t] for t in texts])
    np.testing.assert_allclose(description_direction(Phrases(("blue",), ("yellow",)), embed), [0.7071068, -0.7071068, 0], atol=1e-6)
    only_likes = description_direction(Phrases(("blue",), ()), embed)
    assert only_likes[0] > 0.9 and only_likes[1] == 0.0  # what every text shares ([0, 0, 1]) mostly gone
    assert description_direction(Phrases((), ()), embed) is None


def test_a_description_alone_shifts_the_prior_mean_along_its_direction():
    priors = m.lone_bayes_priors(4)
    direction = np.array([0.0, 1.0, 0.0, 0.0])
    head, posterior = m.adapt_bayes(priors, np.zeros((0, 4)), np.zeros(0), direction=direction)
    # two prior standard deviations (3 each) along the direction; the bias stays at mid-scale
    np.testing.assert_allclose(posterior.mean, [0.0, 6.0, 0.0, 0.0, 5.5])
    np.testing.assert_allclose(posterior.covariance, priors.bayes_covariance)


@pytest.fixture(scope="module")
def demo_clip():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from ppo_demo import models_dir
    from ppo_demo.training.clip import _features, normalize
    from ppo_demo.training.data import to_pixels

    folder = models_dir() / "clip"
    if not (folder / "config.json").exists():
        pytest.skip("the demo CLIP is not built")
    model = transformers.CLIPModel.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)

    @torch.no_grad()
    def embed_images(images):
        features = _features(model.get_image_features(pixel_values=normalize(to_pixels(images)))).numpy()
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    @torch.no_grad()
    def embed_texts(texts):
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        return _features(model.get_text_features(input_ids=tokens.input_ids)).numpy()

    return embed_images, embed_texts


@pytest.mark.parametrize("colour,text", [("blue", "I like blue scenes; no yellow"), ("red", "I love red"),
                                         ("green", "green please, no clutter")])
def test_a_description_on_the_demo_clip_ranks_the_described_colour_first(demo_clip, colour, text):
    from ppo_demo.scenes import example

    embed_images, embed_texts = demo_clip
    examples = [example(seed) for seed in range(120)]
    x = embed_images(np.stack([e[0] for e in examples]))
    direction = description_direction(split_description(text), embed_texts)
    head, _ = m.adapt_bayes(m.lone_bayes_priors(x.shape[1]), np.zeros((0, x.shape[1])), np.zeros(0), direction=direction)
    scores = head.score(x)
    described = np.array([e[2].main.colour == colour for e in examples])
    # the probability that an image of the described colour scores above one of another colour
    auc = np.mean(scores[described][:, None] > scores[~described][None, :])
    assert auc > 0.85
