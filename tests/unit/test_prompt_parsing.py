import pytest

from ppo_client.optimize.parsing import parse_prompts


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('["a red cat", "a blue cat, soft light"]', ["a red cat", "a blue cat, soft light"]),
        ('Sure! Here are some:\n```json\n["a red cat", "a red cat", "A RED CAT."]\n```', ["a red cat"]),
        ('{"prompts": ["one small star", {"prompt": "two big stars"}]}', ["one small star", "two big stars"]),
        ('Here are 2 prompts:\n1. "a red cat at dusk"\n2. "a red cat, watercolor"', ["a red cat at dusk", "a red cat, watercolor"]),
        ("Here are the prompts:\n- a red cat at dusk\n- Prompt 2: a red cat, film grain\n", ["a red cat at dusk", "a red cat, film grain"]),
        ("Sure, I can help with that.", []),
        ("[5] A red circle on blue", ["A red circle on blue"]),
        ("", []),
    ],
)
def test_prompts_are_found_in_any_reply_shape(reply, expected):
    assert parse_prompts(reply) == expected


def test_prompts_seen_before_are_dropped():
    assert parse_prompts('["a red cat", "a Red Cat", "a blue cat"]', seen=["A red cat."]) == ["a blue cat"]


def test_echoed_field_names_and_single_words_are_not_prompts():
    assert parse_prompts("prompt1\nscore3\nresponse1\nboard\na red board game") == ["a red board game"]


def test_answer_markers_are_stripped_and_token_soup_is_dropped():
    reply = "A: 1. A red circle on a blue background, sharp focus\nAnswer: a red circle, soft light\na maxi2cbe5eab9fefddeb circle"
    assert parse_prompts(reply) == ["A red circle on a blue background, sharp focus", "a red circle, soft light"]


def test_escape_sequences_and_hidden_characters_are_no_part_of_a_prompt():
    reply = "1. a red\x1b[31m cat\x1b[0m at dusk\n2. a \u202eblue\u202c cat,\x00 soft\x07 light\n3. \ud800\u200b\x1b]0;title\x07"
    assert parse_prompts(reply) == ["a red cat at dusk", "a blue cat, soft light"]
    assert parse_prompts('{"prompts": ["a \\u001b[1mbold\\u001b[0m cat", "a \\ud800 cat \\u2066at night"]}') == [
        "a bold cat", "a cat at night"]
