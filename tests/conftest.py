"""Shared fixtures: the tiny pipeline, its exported repository, and one embedded Triton server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.processes import processes_mentioning


def pytest_collection_modifyitems(config, items):
    if shutil.which("nvidia-smi") is not None:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (nvidia-smi not found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_structured_output_cache():
    """What one test's mock endpoint taught the process about structured output must not leak into the next."""
    from ppo_client.llm import structured

    structured.forget()
    yield
    structured.forget()


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Path:
    from ppo_server.export.builders import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("pipelines") / "tiny")


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_pipeline_dir) -> Path:
    from ppo_server.export.builders import build_tiny_clip

    return build_tiny_clip(tiny_pipeline_dir.parent / "tiny_clip")


@pytest.fixture(scope="session")
def tiny_export(tiny_pipeline_dir, tiny_clip_dir, tmp_path_factory):
    from ppo_server.export.repository import export_pipeline

    return export_pipeline(
        str(tiny_pipeline_dir), tmp_path_factory.mktemp("repo") / "model_repository", clip=str(tiny_clip_dir)
    )


@pytest.fixture(scope="session")
def tiny_repository(tiny_export) -> Path:
    return Path(tiny_export.repository)


@pytest.fixture(scope="session")
def triton_server(tiny_repository, tmp_path_factory):
    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig

    log = tmp_path_factory.mktemp("logs") / "triton.log"
    server = EmbeddedTritonServer(ServerConfig(tiny_repository, log_file=log))
    server.start()
    yield server
    server.stop()
    leftovers = [p for p in processes_mentioning(str(tiny_repository)) if "tritonserver" in p or "stub" in p]
    assert leftovers == [], f"processes left behind: {leftovers}"


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (skipped, saying how to install it, where there is none)."""
    from tests.postgres import INSTALL_HINT, PostgresServer, binaries

    if binaries() is None:
        pytest.skip(INSTALL_HINT)
    pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg: pip install 'ppo-t2i[postgres]'")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path) -> str:
    """The same store test against both databases."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("postgres_url")
