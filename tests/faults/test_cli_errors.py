"""What a user can type or bring that is wrong: every case is one `error:` line and an exit code,
never a traceback or an object's repr."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main

pytestmark = pytest.mark.faults


def png_header_only(path, width, height):
    """A PNG that announces ``width`` x ``height`` pixels in a few bytes (a decompression bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


@pytest.fixture()
def store(tmp_path):
    path = str(tmp_path / "store.sqlite")
    assert main(["user", "create", "ana", "--store", path]) == 0
    return path


def import_csv(store, folder, lines):
    csv = folder / "ratings.csv"
    csv.write_text("image,rating\n" + "\n".join(lines) + "\n")
    return main(["user", "import", "ana", "--csv", str(csv), "--store", store])


@pytest.mark.parametrize(("side", "message"), [
    (10_000, "bomb.png is 10000x10000 pixels; images of more than 64 megapixels are refused"),
    (20_000, "bomb.png is refused as a decompression bomb"),
])
def test_a_decompression_bomb_in_an_import_is_refused_with_its_row(store, tmp_path, capsys, side, message):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "fine.png")
    png_header_only(tmp_path / "bomb.png", side, side)
    assert import_csv(store, tmp_path, ["fine.png,5", "bomb.png,7"]) == 2
    err = capsys.readouterr().err
    assert "ratings.csv row 3:" in err and message in err and "Traceback" not in err, err


@pytest.mark.parametrize("content", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40], ids=["text", "broken png"])
def test_a_file_that_is_not_an_image_is_named_without_object_reprs(store, tmp_path, capsys, content):
    (tmp_path / "x.png").write_bytes(content)
    assert import_csv(store, tmp_path, ["x.png,5"]) == 2
    err = capsys.readouterr().err
    assert "ratings.csv row 2:" in err and "x.png is not a readable image" in err
    assert "<_io." not in err and " object at 0x" not in err, err


@pytest.mark.parametrize("url", ["ftp://x:1", "localhost", "a:b", "http://host:1/v2"])
def test_a_bad_triton_url_is_one_line(url, tmp_path, capsys):
    assert main(["generate", "--prompt", "a cat", "--out", str(tmp_path / "a.png"), "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_llm_timeout_is_one_line(store, capsys):
    assert main(["optimize", "--user", "ana", "--prompt", "a cat", "--llm-timeout", "-1", "--store", store,
                 "--url", "127.0.0.1:9"]) == 2
    assert "LLM timeout must be a positive number of seconds" in capsys.readouterr().err


# --- ppo-client optimize: every refused flag is refused before a run folder, a store or a server is touched ---

@pytest.mark.parametrize("flags", [
    ["--seed", "-1"], ["--seed", str(2**70)], ["--iterations", "-5"], ["--iterations", "0"], ["--iterations", "101"],
    ["--steps", "0"], ["--steps", "100000"], ["--n-prompts", "0"], ["--n-prompts", "17"], ["--seeds", "0"],
    ["--seeds", "9"], ["--screen", "-1"], ["--screen", "65"], ["--guidance", "nan"], ["--guidance", "-1"],
    ["--guidance", "inf"], ["--subject-guard", "1"], ["--subject-guard", "nan"], ["--prompt", " "],
    ["--prompt", "x" * 1001], ["--llm-retries", "-1"], ["--llm-timeout", "nan"], ["--run-dir", "{file}"],
], ids=lambda flags: " ".join(flags)[:30])
def test_a_refused_optimize_flag_is_one_line_exit_2_and_leaves_no_run_folder(tmp_path, monkeypatch, capsys, flags):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    flags = [f.replace("{file}", str(tmp_path / "a-file")) for f in flags]
    store = tmp_path / "store" / "store.sqlite"
    code = main(["optimize", "--user", "ana", "--prompt", "a cat", "--optimizer", "random", "--store", str(store),
                 "--url", "127.0.0.1:9", *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], "no run folder (runs/...), no store"


@pytest.mark.parametrize("flags", [["--seed", "-1"], ["--steps", "0"], ["--iterations", "-5"], ["--screens", "0,65"],
                                   ["--prompts-file", "{missing}"], ["--repeats", "0"], ["--shard", "0/2"],
                                   ["--shard", "3/2"], ["--shard", "a/b"], ["--shard", "1/0"], ["--shard=-1/2"]],
                         ids=lambda flags: " ".join(flags)[:30])
def test_a_refused_experiment_flag_is_one_line_exit_2_and_leaves_no_folder(tmp_path, monkeypatch, capsys, flags):
    monkeypatch.chdir(tmp_path)
    flags = [f.replace("{missing}", str(tmp_path / "none.txt")) for f in flags]
    code = main(["experiment", "--users", "ana", "--prompt", "a cat", "--optimizers", "random", "--out", "exp",
                 "--store", str(tmp_path / "store.sqlite"), "--url", "127.0.0.1:9", *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
