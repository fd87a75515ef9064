"""Where an SQLite store keeps its images: a folder of files beside the database (the layout before
schema version 5, taken from an earlier commit's ``store.py``) or the database file itself (now).

Times, for the same images, an import of N rated images (one transaction) and reading every image
back (what training and the app's image endpoint do), with both stores' real code. Writes
``benchmarks/results/store/store_images.{json,md}``.

    python benchmarks/store_images.py [--images 200] [--size 512] [--previous-commit 1762aed]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client"))

from ppo_client.console import sigterm_as_exit  # noqa: E402
from ppo_client.store import RatingRow, UserStore  # noqa: E402


def previous_store(commit: str, folder: Path):
    """The store module of ``commit`` (one file then), loaded under its own name."""
    source = subprocess.run(["git", "show", f"{commit}:client/ppo_client/store.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    import ppo_client.head

    sys.modules.setdefault("ppo_client.piaa.head", ppo_client.head)  # where heads lived then
    path = folder / "previous_store.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("previous_store", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def images(folder: Path, count: int, size: int) -> list[Path]:
    """Smooth noise PNGs (about the size of a rendered image's PNG)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        path = folder / f"{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def measure(kind: str, make_store, paths: list[Path], read_one, repeats: int) -> dict:
    imports, reads = [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            store = make_store(Path(tmp) / "store.sqlite")
            store.create_user("ana")
            rows = [RowType(p.name, p, 1 + i % 10) for i, p in enumerate(paths)]
            started = time.perf_counter()
            store.import_ratings("ana", rows, source="bench")
            imports.append(time.perf_counter() - started)
            hashes = [r.image_hash for r in store.ratings("ana")]
            started = time.perf_counter()
            total = sum(len(read_one(store, h)) for h in hashes)
            reads.append(time.perf_counter() - started)
            size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
            store.close()
    n = len(paths)
    return {"store": kind, "import_images_per_s": n / statistics.median(imports),
            "read_images_per_s": n / statistics.median(reads), "bytes_read": total, "bytes_on_disk": size,
            "import_s": imports, "read_s": reads}


RowType = RatingRow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--previous-commit", default="1762aed")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "store")
    args = parser.parse_args()
    global RowType
    with tempfile.TemporaryDirectory() as tmp:
        old = previous_store(args.previous_commit, Path(tmp))
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = images(folder, args.images, args.size)
        rows = []
        RowType = old.RatingRow
        rows.append(measure("folder (before schema 5)", old.UserStore, paths,
                            lambda s, h: s.image_file(h).read_bytes(), args.repeats))
        RowType = RatingRow
        rows.append(measure("in the database file (schema 5)", UserStore, paths,
                            lambda s, h: s.image(h).data, args.repeats))
    png_kb = statistics.mean(p for p in [r["bytes_read"] / args.images / 1e3 for r in rows[:1]])
    result = {"images": args.images, "size": args.size, "png_kb": png_kb, "repeats": args.repeats,
              "previous_commit": args.previous_commit, "machine": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "store_images.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# SQLite store: images in a folder vs in the database file ({args.images} PNGs of {args.size}x{args.size}, "
             f"{png_kb:.0f} KB each; median of {args.repeats}; {result['date']})", "",
             "| store | import (images/s) | read back (images/s) | on disk (MB) |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['store']} | {r['import_images_per_s']:.0f} | {r['read_images_per_s']:.0f} | "
                     f"{r['bytes_on_disk'] / 1e6:.1f} |")
    lines += ["", f"`python benchmarks/store_images.py --images {args.images} --size {args.size}`", ""]
    (args.results / "store_images.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        raise SystemExit(main())
