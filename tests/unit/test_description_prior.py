"""A description as a prior: the offline phrase split, the zero-shot reading, the reading learnt
from described training users, and a zero-shot head on the demo CLIP."""

import numpy as np
import pytest

from ppo_client.piaa import methods as m
from ppo_client.piaa.description import (
    DescribedTaste,
    Phrases,
    description_direction,
    read_description,
    split_description,
)
from ppo_client.piaa.metrics import spearman


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

    def embed(texts):
        return np.array([table[t] for t in texts])

    np.testing.assert_allclose(description_direction(Phrases(("blue",), ("yellow",)), embed), [0.7071068, -0.7071068, 0], atol=1e-6)
    only_likes = description_direction(Phrases(("blue",), ()), embed)
    assert only_likes[0] > 0.9 and only_likes[1] == 0.0  # what every text shares ([0, 0, 1]) mostly gone
    assert description_direction(Phrases((), ()), embed) is None


def test_the_features_add_liked_and_subtract_disliked_phrases():
    table = {"blue": [1.0, 0.0, 0.0], "dark": [0.0, 2.0, 0.0], "yellow": [0.0, 0.0, 1.0], "an image": [1.0, 1.0, 1.0]}
    described = read_description(Phrases(("blue", "dark"), ("yellow",)), lambda texts: np.array([table[t] for t in texts]))
    np.testing.assert_allclose(described.features, [1.0, 1.0, -1.0])  # unit phrase embeddings
    assert read_description(Phrases((), ()), lambda texts: np.zeros((len(texts), 3))) is None


def test_a_description_alone_shifts_the_prior_mean_along_its_direction():
    priors = m.lone_bayes_priors(4)
    direction = np.array([0.0, 1.0, 0.0, 0.0])
    described = DescribedTaste(Phrases(("x",), ()), direction, direction)
    head, posterior = m.adapt_bayes(priors, np.zeros((0, 4)), np.zeros(0), description=described)
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
    described = read_description(split_description(text), embed_texts)
    head, _ = m.adapt_bayes(m.lone_bayes_priors(x.shape[1]), np.zeros((0, x.shape[1])), np.zeros(0), description=described)
    scores = head.score(x)
    described = np.array([e[2].main.colour == colour for e in examples])
    # the probability that an image of the described colour scores above one of another colour
    auc = np.mean(scores[described][:, None] > scores[~described][None, :])
    assert auc > 0.85


# --- the reading learnt from training users who gave a description and ratings ---

DIM = 6


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _described_world(users: int, seed: int = 0, noise: float = 0.3):
    """Users whose head is a fixed linear map of their description's features (plus a personal
    bias), each rating 40 random images with noise: what the map has to recover."""
    rng = np.random.default_rng(seed)
    mapping = rng.normal(0.0, 1.0, (DIM, DIM))
    tasks, heads = [], []
    for _ in range(users):
        features = rng.normal(0.0, 1.0, DIM)
        head = np.append(mapping @ features, 5.5 + rng.normal(0.0, 0.3))
        x = _unit(rng.normal(size=(40, DIM)))
        tasks.append(m.Task(x, m.design(x) @ head + rng.normal(0.0, noise, 40), features))
        heads.append(head)
    return tasks, mapping


def _taste(features):
    return DescribedTaste(Phrases(("x",), ()), features / np.linalg.norm(features), features)


def test_the_leave_one_out_heads_match_refitting_without_each_user():
    rng = np.random.default_rng(1)
    features, heads = rng.normal(size=(9, 4)), rng.normal(size=(9, 5))
    _, loo = m._loo_heads(features, heads, 0.7)
    for i in range(9):
        keep = np.arange(9) != i
        coefficients, _ = m._loo_heads(features[keep], heads[keep], 0.7)
        np.testing.assert_allclose(loo[i], m._kernel(features[keep], features[i:i + 1])[:, 0] @ coefficients, atol=1e-6)


def test_described_training_users_teach_a_map_that_reads_a_new_description():
    tasks, mapping = _described_world(40)
    priors = m.fit_priors(tasks, 8, ["bayes"])
    assert priors.bayes_description is not None and priors.bayes_description.kappa > 0
    rng = np.random.default_rng(7)
    learnt, zero_shot = [], []
    undescribed = m.fit_priors([m.Task(t.x, t.y) for t in tasks], 8, ["bayes"])
    assert undescribed.bayes_description is None  # nothing to learn from: zero-shot reading
    for _ in range(20):
        features = rng.normal(size=DIM)
        x = _unit(rng.normal(size=(60, DIM)))
        truth = x @ (mapping @ features)
        empty = np.zeros((0, DIM)), np.zeros(0)
        learnt.append(spearman(m.design(x) @ m.bayes_posterior(priors, *empty, description=_taste(features)).mean, truth))
        zero_shot.append(spearman(m.design(x) @ m.bayes_posterior(undescribed, *empty, description=_taste(features)).mean, truth))
    # the features are not the head's direction (a random map lies between), so only learning reads them
    assert np.mean(learnt) > 0.8 and np.mean(learnt) > np.mean(zero_shot) + 0.3


def test_too_few_described_users_leave_the_zero_shot_reading():
    tasks, _ = _described_world(30)
    mixed = [t if i < m.MIN_DESCRIBED - 1 else m.Task(t.x, t.y) for i, t in enumerate(tasks)]
    assert m.fit_priors(mixed, 8, ["bayes"]).bayes_description is None


def test_a_description_unlike_any_training_one_is_trusted_less_and_moves_no_cluster_weight():
    tasks, _ = _described_world(40)
    # training descriptions span only the first three feature directions
    flat = [m.Task(t.x, t.y, np.append(t.description[:3], np.zeros(DIM - 3))) for t in tasks]
    priors = m.fit_priors(flat, 8, ["bayes"])
    learnt = priors.bayes_description
    familiar, novel = np.array([1.0, -1.0, 0.5, 0, 0, 0]), np.array([0, 0, 0, 1.0, -1.0, 0.5])
    assert learnt.novelty(familiar) < 0.05 and learnt.novelty(novel) > 0.95
    assert learnt.noise(novel) > 10 * learnt.noise(familiar)
    empty = np.zeros((0, DIM)), np.zeros(0)
    plain = m.bayes_posterior(priors, *empty)
    for features in (familiar, novel):
        described = m.bayes_posterior(priors, *empty, description=_taste(features))
        np.testing.assert_allclose(described.weights, plain.weights)
    moved = [np.linalg.norm(m.bayes_posterior(priors, *empty, description=_taste(f)).mean - plain.mean) /
             np.linalg.norm(learnt.predict(f) - plain.mean) for f in (familiar, novel)]
    assert moved[0] > 2 * moved[1]  # the share of the way to the predicted head
