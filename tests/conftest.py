"""Shared fixtures: a tiny model folder, a Ray cluster per session, data writers, a PostgreSQL
server and a fresh database URL of each kind (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Ray workers import test modules (e.g. reward functions `rl_rewards:...`) from here too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from postgres_server import PostgresServer, postgres_bin  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (a head costs ~1.6 GB; share it). Its 4 GPUs are
    logical: nothing here uses a device, the placement tests check where actors land."""
    import ray

    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


RL_PROMPTS = ["What is 3 + 4?", "Write one short sentence about the sea.", "the quick brown fox", "Yes or No?"]


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory) -> str:
    """Prompts for the tiny RL runs (tests/test_rlhf_pipeline.py `tiny_rl_config`)."""
    return write_jsonl(tmp_path_factory.mktemp("rl-data") / "prompts.jsonl",
                       [{"prompt": [{"role": "user", "content": p}], "task": "t"} for p in RL_PROMPTS * 4])


def trained_runs(encoded) -> list[list[int]]:
    """The maximal runs of consecutive tokens that carry loss in an encoded example."""
    runs, current = [], []
    for token, trained in zip(encoded.input_ids, encoded.loss_mask):
        if trained:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def send_json(handler, body: dict) -> None:
    """A 200 JSON reply from an http.server handler (the scripted endpoints of the tests)."""
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of the module's own (tests/postgres_server.py)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed here (Debian: postgresql)")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A fresh, empty database URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    from sqlalchemy import create_engine, text

    server = request.getfixturevalue("postgres")
    name = f"t{secrets.token_hex(6)}"
    admin = create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.url(name)
