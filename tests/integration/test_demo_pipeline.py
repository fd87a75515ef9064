"""The shipped demo pipeline goes through the same export and serving path as any SD checkpoint,
and what it draws follows the prompt."""

from __future__ import annotations

import numpy as np
import pytest

from ppo_client import Txt2ImgClient
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.presets import demo_models_dir, demo_pipeline_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    from ppo_server.export.repository import export_pipeline

    repository = tmp_path_factory.mktemp("demo") / "repo"
    export_pipeline(str(demo_pipeline_dir()), repository)
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        yield server


def test_served_demo_images_show_the_colours_and_shape_the_prompt_names(demo_server):
    from ppo_client.demo.scenes import COLOURS, SHAPES
    from ppo_server.demo_training.judge import load_judge

    judge = load_judge(demo_models_dir() / "judge.pt").float()
    prompts = [
        ("a large red circle on a blue background", "red", "blue", "circle"),
        ("a big yellow square against a black backdrop", "yellow", "black", "square"),
        ("a huge white triangle on a green background", "white", "green", "triangle"),
    ]
    import torch

    hits = {"main_colour": 0, "background": 0, "main_shape": 0}
    with Txt2ImgClient(demo_server.grpc_url) as client:
        for text, colour, background, shape in prompts:
            for seed in range(3):
                image = np.asarray(client.generate(text, seed=seed, steps=20, guidance_scale=7.5))
                pixels = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                with torch.no_grad():
                    out = judge(pixels)
                names = list(COLOURS)
                hits["main_colour"] += names[int(out["main_colour"].argmax())] == colour
                hits["background"] += names[int(out["background"].argmax())] == background
                hits["main_shape"] += SHAPES[int(out["main_shape"].argmax())] == shape
    print(f"demo prompt-following over 9 images: {hits}")
    assert hits["main_colour"] >= 7 and hits["background"] >= 7
