"""``benchmarks/store.py --quick``: a few operations per cell against a real SQLite file and a real
PostgreSQL, so the benchmark cannot rot (its numbers mean nothing here and are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import INSTALL_HINT, binaries

ROOT = Path(__file__).resolve().parents[2]
DATABASES = ("sqlite", "postgresql")
CONCURRENCY = ("1", "8", "32")
OPERATIONS = ("rate", "training_read", "latest_model")

pytestmark = pytest.mark.integration


def test_the_quick_store_benchmark_fills_every_cell_without_errors(tmp_path):
    if binaries() is None:
        pytest.skip(INSTALL_HINT)
    pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg: pip install 'ppo-t2i[postgres]'")
    command = [sys.executable, str(ROOT / "benchmarks" / "store.py"), "--quick", "--results", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "store.json").read_text())
    assert results["quick"] and results["errors"] == 0 and results["lost_writes"] == 0
    for database in DATABASES:
        assert set(results["cells"][database]) == set(CONCURRENCY)
        for concurrency in CONCURRENCY:
            cells = results["cells"][database][concurrency]
            assert set(cells) == set(OPERATIONS)
            for operation, cell in cells.items():
                assert cell["errors"] == 0, (database, concurrency, operation, cell["first_error"])
                assert cell["operations"] == results["counts"][operation] and cell["ops_per_s"] > 0
            rate = cells["rate"]
            assert rate["ratings_found"] == rate["writes"] == results["counts"]["rate"]
            assert rate["lost"] == rate["extra"] == rate["wrong_value"] == 0
    table = (tmp_path / "store.md").read_text()
    assert table.startswith("# User store") and "| latest_model | 32 |" in table
