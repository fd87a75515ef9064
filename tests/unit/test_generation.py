import math

import pytest

from ppo_client import contract
from ppo_client.contract import SizeLimits
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest, check_prompt_count

LIMITS = SizeLimits(multiple=16, min_side=16, max_side=256, native_side=64)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": contract.MAX_STEPS + 1}, "steps"),
        ({"guidance_scale": math.nan}, "guidance_scale"),
        ({"guidance_scale": math.inf}, "guidance_scale"),
        ({"height": 72}, "height"),
        ({"width": 512}, "width"),
        ({"seed": -1}, "seed"),
        ({"scheduler": "nope"}, "scheduler"),
        ({"prompt": None}, "prompt"),
    ],
)
def test_a_bad_field_is_named_in_the_error(fields, field):
    request = GenerationRequest(**{"prompt": "a cat", "height": 64, "width": 64, **fields})
    with pytest.raises(InvalidRequestError) as info:
        request.checked(LIMITS)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")


def test_a_valid_request_passes_and_zero_sides_become_the_native_side():
    request = GenerationRequest(prompt="a cat").sized(LIMITS).checked(LIMITS)
    assert (request.height, request.width) == (64, 64)


def test_too_many_prompts_in_one_request_are_refused():
    check_prompt_count(contract.MAX_PROMPTS_PER_REQUEST)
    with pytest.raises(InvalidRequestError, match="prompts in one request"):
        check_prompt_count(contract.MAX_PROMPTS_PER_REQUEST + 1)
