"""A wheel install, not the editable checkout, exports and serves the demo preset: the demo models
travel as package data, and nothing finds its files through the source tree.

The wheel is built from the checkout's files and installed into a fresh virtualenv that borrows the
test environment's third-party packages (a path in a ``.pth`` file: torch and the Triton wheel are
not installed twice) but not its editable install of this project.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _source_copy(target: Path) -> Path:
    """The files git would ship (tracked, or new and not ignored), without build leftovers."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("builds the wheel from the git checkout's files; this is not a git checkout")
    root = tmp_path_factory.mktemp("wheel")
    source = _source_copy(root / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
                    str(root / "dist"), str(source)], check=True, timeout=600)
    (wheel,) = (root / "dist").glob("ppo_t2i-*.whl")
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # third-party packages from the test environment; its own .pth files (the editable install) are not read
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True, timeout=600)
    return env, wheel


def test_the_wheel_carries_the_demo_models(wheel_env):
    import zipfile

    _, wheel = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("ppo_demo/models/pipeline/model_index.json", "ppo_demo/models/pipeline/unet/diffusion_pytorch_model.safetensors",
                 "ppo_demo/models/clip/model.safetensors", "ppo_demo/models/judge.pt",
                 "ppo_client/app/templates/base.html", "ppo_client/store/migrations/env.py",
                 "ppo_client/store/migrations/versions/0001_schema_1.py",
                 "ppo_client/store/migrations/versions/0005_images_in_the_database.py"):
        assert part in names, part
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_a_wheel_install_exports_and_serves_the_demo_preset(wheel_env, tmp_path):
    env, _ = wheel_env
    repository = tmp_path / "repository"
    # the console script of the wheel install, run away from the checkout
    subprocess.run([str(env / "bin" / "ppo-export"), "--preset", "demo", "--out", str(repository)], cwd=tmp_path,
                   check=True, timeout=600)
    assert (repository / "txt2img" / "config.pbtxt").exists() and (repository / "image_encoder" / "1" / "model.onnx").exists()
    script = textwrap.dedent(f"""
        import json
        import numpy as np
        import ppo_client, ppo_demo, ppo_server
        from ppo_client.scoring import ScoringClient
        from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig

        with EmbeddedTritonServer(ServerConfig({str(repository)!r})) as server:
            with ScoringClient(server.grpc_url) as client:
                image = client.generate("a red circle on a blue background", seed=1, steps=4, guidance_scale=3.0)
                embedding = client.embed([image])
        print(json.dumps({{"packages": [m.__file__ for m in (ppo_client, ppo_demo, ppo_server)],
                          "models": str(ppo_demo.models_dir()), "size": image.size,
                          "norm": float(np.linalg.norm(embedding[0])), "std": float(np.asarray(image).std())}}))
    """)
    done = subprocess.run([str(env / "bin" / "python"), "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(Path(f).is_relative_to(env) for f in result["packages"]), result["packages"]
    assert Path(result["models"]).is_relative_to(env)
    assert result["size"] == [64, 64] and result["norm"] == pytest.approx(1.0, abs=1e-3) and result["std"] > 5


def test_a_wheel_install_upgrades_an_old_store_through_its_migrations(wheel_env, tmp_path):
    """Alembic reads the migrations as files: they must travel in the wheel and be found there."""
    from tests.unit.test_store_migrations import legacy_store

    env, _ = wheel_env
    store = tmp_path / "old.sqlite"
    hashes = legacy_store(store, 2)
    done = subprocess.run([str(env / "bin" / "ppo-client"), "store", "check", "--json", "--store", str(store)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found["schema_version"] >= 5 and found["clean"], found
    import sqlite3

    with sqlite3.connect(store) as db:
        kept = {h for (h,) in db.execute("SELECT hash FROM images WHERE data IS NOT NULL")}
    assert kept == set(hashes), "the old store's image folder moved into the file"

