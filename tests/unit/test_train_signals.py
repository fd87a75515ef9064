"""train_user with ratings, choices and a description, against a fake store and server."""


import numpy as np
import pytest

from ppo_client.errors import ConfigurationError, StoreError
from ppo_client.piaa.training import train_user
from ppo_client.scoring import EncoderInfo, TextEmbeddings
from ppo_client.store import Choice, Description, Rating

DIM = 8
WORDS = {"blue": 0, "yellow": 1, "clutter": 2, "an image": 3}


class FakeClient:
    def encoder_info(self):
        return EncoderInfo("enc", DIM)

    def embed_texts(self, texts):
        return TextEmbeddings(np.eye(DIM)[[WORDS[t] for t in texts]], np.ones(len(texts)))


class FakeStore:
    """Every image embedded already: image ``h<i>`` lies along axis ``i % 3``."""

    def __init__(self, ratings=0, choices=0, description=None):
        rng = np.random.default_rng(0)
        self.vectors = {}
        for i in range(30):
            v = np.eye(DIM)[i % 3] + 0.1 * rng.normal(size=DIM)
            self.vectors[f"h{i}"] = v / np.linalg.norm(v)
        self._ratings = [Rating(f"h{i}", 8.0 if i % 3 == 0 else 3.0, "test") for i in range(ratings)]
        # the person picks the image along axis 0 whenever one is shown
        self._choices = []
        for c in range(choices):
            shown = tuple(f"h{(c + j) % 30}" for j in range(3))
            self._choices.append(Choice(c, shown, next(h for h in shown if int(h[1:]) % 3 == 0), "chosen", "test", 0.0))
        self._description = Description(1, description, 0.0) if description else None
        self.saved = []

    def ratings(self, name):
        return self._ratings

    def choices(self, name):
        return self._choices

    def description(self, name):
        return self._description

    def users(self):
        return []

    def present(self, hashes):
        return set(hashes)

    def embeddings(self, hashes, encoder):
        return {h: self.vectors[h] for h in hashes}

    def put_embeddings(self, vectors, encoder):
        raise AssertionError("everything is cached")

    def save_model(self, name, method, encoder, head, params, metrics, covariance=None):
        self.saved.append((method, params, metrics, {"covariance": covariance}))
        return len(self.saved)


def _scores(trained):
    return trained.head.score(np.eye(DIM)[:3])


def test_a_description_alone_gives_a_head_that_prefers_what_it_names():
    store = FakeStore(description="I like blue; no yellow")
    trained = train_user(FakeClient(), store, "ann", "bayes")
    scores = _scores(trained)
    assert scores[0] > scores[2] > scores[1]
    assert trained.params["signals"] == ["description"]
    assert trained.params["description"]["likes"] == ["blue"]
    assert store.saved[0][3]["covariance"].shape == (DIM + 1, DIM + 1)


def test_choices_alone_give_a_head_and_a_held_out_choice_accuracy():
    store = FakeStore(choices=20)
    trained = train_user(FakeClient(), store, "ann", "bayes")
    scores = _scores(trained)
    assert scores[0] > max(scores[1], scores[2])
    assert trained.params["signals"] == ["choices"]
    assert trained.params["choices"] == 20 and trained.params["choice_outcomes"]["chosen"] == 20
    assert trained.metrics["cv_choice_accuracy"] > 0.9 and trained.metrics["cv_srocc"] is None
    assert store.saved[0][3]["covariance"].shape == (DIM + 1, DIM + 1)


def test_every_signal_is_used_by_default_and_signals_restrict():
    store = FakeStore(ratings=12, choices=6, description="I like blue")
    everything = train_user(FakeClient(), store, "ann", "bayes")
    assert everything.params["signals"] == ["ratings", "choices", "description"]
    assert everything.params["ratings"] == 12 and everything.params["choices"] == 6
    only = train_user(FakeClient(), store, "ann", "bayes", signals=frozenset({"ratings"}))
    assert only.params["signals"] == ["ratings"] and only.params["choices"] == 0


def test_knn_asked_for_choices_is_refused_naming_them_and_by_default_ignores_them(caplog):
    store = FakeStore(ratings=12, choices=6)
    with pytest.raises(ConfigurationError, match="cannot learn from choices"):
        train_user(FakeClient(), store, "ann", "knn", signals=frozenset({"ratings", "choices"}))
    with caplog.at_level("INFO"):
        trained = train_user(FakeClient(), store, "ann", "knn")
    assert trained.params["signals"] == ["ratings"]
    assert "ignores 6 choices" in caplog.text


def test_a_user_with_nothing_to_learn_from_is_refused():
    with pytest.raises(StoreError, match="some choices or a description"):
        train_user(FakeClient(), FakeStore(ratings=2), "ann", "bayes")
    with pytest.raises(ConfigurationError, match="signals must be"):
        train_user(FakeClient(), FakeStore(ratings=12), "ann", "bayes", signals=frozenset({"vibes"}))


class ShiftedClient(FakeClient):
    """Text embeddings on axes no image lies along: a zero-shot reading of a description says nothing."""

    def embed_texts(self, texts):
        axes = {"blue": 4, "yellow": 5, "clutter": 6, "an image": 7}
        return TextEmbeddings(np.eye(DIM)[[axes[t] for t in texts]], np.ones(len(texts)))


class CrowdStore(FakeStore):
    """``ann`` with only a description, and other users who each describe one word and rate the
    images along that word's image axis (blue: 0, yellow: 1, clutter: 2) high."""

    LIKES = {"blue": 0, "yellow": 1, "clutter": 2}

    def __init__(self, description, others=9):
        super().__init__(description=description)
        words = list(self.LIKES)
        self.others = {f"u{k}": words[k % 3] for k in range(others)}

    def users(self):
        from types import SimpleNamespace
        return [SimpleNamespace(name=n, ratings=30) for n in self.others]

    def ratings(self, name):
        if name not in self.others:
            return super().ratings(name)
        axis = self.LIKES[self.others[name]]
        return [Rating(f"h{i}", 8.0 if i % 3 == axis else 3.0, "test") for i in range(30)]

    def description(self, name):
        if name not in self.others:
            return super().description(name)
        return Description(1, f"I like {self.others[name]}", 0.0)


def test_other_users_descriptions_teach_bayes_what_a_description_means():
    trained = train_user(ShiftedClient(), CrowdStore("I like yellow"), "ann", "bayes")
    scores = _scores(trained)
    assert scores[1] > max(scores[0], scores[2])  # yellow-likers rate the axis-1 images high
    reading = trained.params["description"]
    assert reading["read"] == "learnt" and reading["from_users"] == 9 and reading["novelty"] < 0.1
    # with too few described users the text alone is read, and says nothing about these images
    few = train_user(ShiftedClient(), CrowdStore("I like yellow", others=2), "ann", "bayes")
    assert few.params["description"]["read"] == "zero-shot"
