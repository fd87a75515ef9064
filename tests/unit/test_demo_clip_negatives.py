import dataclasses

import numpy as np
import pytest
import torch

from ppo_demo.scenes import example
from ppo_demo.training.clip import altered, caption_pairs, variants
from ppo_demo.training.data import SceneSet

SCENES = [example(seed)[2] for seed in range(200)]


def _differences(a, b) -> set[str]:
    changed = {f"main_{f.name}" for f in dataclasses.fields(a.main) if getattr(a.main, f.name) != getattr(b.main, f.name)}
    if a.background != b.background:
        changed.add("background")
    others_a = [o for o in a.objects if o is not a.main]
    others_b = [o for o in b.objects if o is not b.main]
    if others_a != others_b or (a.pattern, a.brightness, a.warmth, a.blur, a.grain) != (
            b.pattern, b.brightness, b.warmth, b.blur, b.grain):
        changed.add("rest")
    return changed


@pytest.mark.parametrize("kind,field", [("shape", "main_shape"), ("colour", "main_colour"), ("background", "background")])
def test_variants_change_only_the_named_attribute_and_keep_scenes_valid(kind, field):
    for scene in SCENES:
        options = variants(scene, kind)
        assert options, scene
        for option in options:
            assert _differences(scene, option) == {field}
            assert option.main.colour != option.background
            assert option.background not in {o.colour for o in option.objects}
        assert len({repr(o) for o in options}) == len(options)


def test_unknown_attribute_is_refused():
    with pytest.raises(ValueError, match="size"):
        variants(SCENES[0], "size")


def test_hard_negatives_are_mostly_shape_changes_and_deterministic():
    kinds = [next(iter(_differences(s, altered(s, np.random.default_rng(i))))) for i, s in enumerate(SCENES)]
    assert set(kinds) == {"main_shape", "main_colour", "background"}
    assert kinds.count("main_shape") > len(kinds) / 2
    again = [next(iter(_differences(s, altered(s, np.random.default_rng(i))))) for i, s in enumerate(SCENES)]
    assert kinds == again


def test_caption_pairs_share_wording_but_name_the_changed_attribute():
    data = SceneSet(32)
    indices = data.indices(step=3, batch=16)
    captions, negatives, altered_scenes = caption_pairs(data, indices, step=3, seed=1)
    assert (captions, negatives, altered_scenes) == caption_pairs(data, indices, step=3, seed=1)
    assert all(c != n for c, n in zip(captions, negatives, strict=True))
    assert all(len(_differences(data.scenes[i], a)) == 1 for i, a in zip(indices, altered_scenes, strict=True))
    # the same words apart from the changed attribute's: most words are shared
    shared = [len(set(c.split()) & set(n.split())) / len(set(c.split())) for c, n in zip(captions, negatives, strict=True)]
    assert np.mean(shared) > 0.7


class _BagOfWords(torch.nn.Module):
    """A text encoder whose hidden states are its token embeddings: it keeps every word."""

    def __init__(self, vocab: int, width: int = 32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, width)

    def forward(self, input_ids):
        return (self.embed(input_ids),)


class _Blind(_BagOfWords):
    def forward(self, input_ids):
        return (torch.zeros(*input_ids.shape, 4),)


def test_text_encoder_probe_tells_an_encoder_that_keeps_words_from_one_that_keeps_nothing():
    from transformers import CLIPTokenizer

    from ppo_demo.preset import demo_pipeline_dir
    from ppo_demo.training.evaluate import text_encoder_probe

    tokenizer = CLIPTokenizer.from_pretrained(demo_pipeline_dir() / "tokenizer")
    keeps = text_encoder_probe(_BagOfWords(tokenizer.vocab_size), tokenizer, train=400, test=100)
    blind = text_encoder_probe(_Blind(tokenizer.vocab_size), tokenizer, train=400, test=100)
    for name in keeps:
        assert blind[name] < 0.3, blind  # no better than guessing the commonest class
        # mean-pooled words lose their order (which colour is the background's), yet beat guessing
        assert keeps[name] > blind[name] + 0.15, (keeps, blind)
