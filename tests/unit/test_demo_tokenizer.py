import json

import pytest

from ppo_demo.training.tokenizer import PROMPT_WORDS, build_demo_tokenizer, scene_captions
from ppo_server.export.builders import _byte_level_alphabet

SEEDS = range(2000)
VOCAB_SIZE = 2048


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_tokenizer")
    return folder, build_demo_tokenizer(folder, vocab_size=VOCAB_SIZE, caption_seeds=SEEDS)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def test_files_are_written_in_clip_format_and_reload(built):
    from transformers import AutoTokenizer, CLIPTokenizer

    folder, tokenizer = built
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    assert (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[0] == "#version: 0.2"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    alphabet = _byte_level_alphabet()
    assert set(alphabet) | {c + "</w>" for c in alphabet} <= set(vocab)
    assert sorted(vocab.values()) == list(range(len(vocab))) and len(vocab) <= VOCAB_SIZE
    assert len(tokenizer) == len(vocab)

    text = "a red circle on a blue striped background, highly detailed, cinematic lighting"
    expected = "a red circle on a blue striped background , highly detailed , cinematic lighting".split()
    assert tokenizer.tokenize(text) == [w + "</w>" for w in expected]
    for reloaded in (CLIPTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)):
        assert reloaded(text).input_ids == tokenizer(text).input_ids


def test_same_inputs_give_byte_identical_files(built, tmp_path):
    folder, _ = built
    build_demo_tokenizer(tmp_path, vocab_size=VOCAB_SIZE, caption_seeds=SEEDS)
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


def test_every_caption_word_is_one_token(built):
    _, tokenizer = built
    backend = tokenizer.backend_tokenizer
    # CLIP's pre-tokeniser splits "mid-sized" into "mid", "-", "sized": those pieces are its words.
    pieces = {
        piece
        for text in scene_captions(SEEDS)
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))
    }
    assert len(pieces) > 50
    assert [p for p in sorted(pieces) if len(backend.model.tokenize(p)) != 1] == []
    assert all(len(_ids(tokenizer, p)) == 1 for p in ("crimson", "checkerboard", "backdrop", "tangerine"))


def test_most_prompt_words_are_one_token(built):
    _, tokenizer = built
    words = sorted({word for entry in PROMPT_WORDS for word in entry.split()})
    assert len(PROMPT_WORDS) >= 400 and len(set(PROMPT_WORDS)) == len(PROMPT_WORDS)
    single = [w for w in words if len(_ids(tokenizer, w)) == 1]
    assert len(single) / len(words) >= 0.9, sorted(set(words) - set(single))
    # words outside the corpus still encode, just in more pieces
    assert len(_ids(tokenizer, "rutkowski")) > 1


def test_non_ascii_text_round_trips_without_unknown_tokens(built):
    _, tokenizer = built
    ids = tokenizer("Café  ☕\tnaïve").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "café ☕ naïve"


def test_special_tokens_are_the_last_two_ids(built):
    _, tokenizer = built
    size = len(tokenizer)
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|startoftext|>", "<|endoftext|>")
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (size - 2, size - 1)
    ids = tokenizer("a cat").input_ids
    assert ids[0] == size - 2 and ids[-1] == size - 1 and max(ids[1:-1]) < size - 2


def test_padding_and_truncation_give_77_ids(built):
    _, tokenizer = built
    assert tokenizer.model_max_length == 77
    for text in ("a cat", "a very long prompt " * 40):
        ids = tokenizer(text, padding="max_length", truncation=True).input_ids
        assert len(ids) == 77
        assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in ids
