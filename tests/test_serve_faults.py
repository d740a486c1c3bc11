"""A policy replica killed under a bounded load (tiny model, two replicas): Serve replaces it,
the clients' failures are few, none hangs past its timeout, and serving is whole again after
the replacement. The figures are those of bench/replica_kill.py (the same function).
Measured on a 2-core machine shared with other sessions (load average 16-34): 1,766 requests,
one 503, the longest 1.0 s, the first success 0.1 s after the kill, replaced after 87 s."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from replica_kill import kill_under_load  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

KEY = "fault-key"
CLIENTS, SECONDS, KILL_AFTER_S, TIMEOUT_S = 4, 15, 5, 20  # the load goes on until 5 s past the replacement


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_replicas(ray_cluster, tmp_path_factory):
    from ray import serve

    from rayalign.serving import lifecycle

    root = tmp_path_factory.mktemp("serve-faults")
    model = build_tiny_model(root / "tiny-llm", hidden_size=64, heads=2)
    (root / "runs").mkdir()
    (root / "keys").write_text(f"{KEY}\n")
    args = {"runs_dir": str(root / "runs"), "models": [model], "auth": {"keys_file": str(root / "keys")},
            "engine": {"max_model_len": 512, "max_num_seqs": 8},
            "deployments": {"policy": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0}}}}
    url = lifecycle.start(args, port=free_port())
    segments = lifecycle.EngineSegments()  # what `rayalign serve` keeps while it runs
    segments.note()
    try:
        yield {"url": url, "segments": segments}
    finally:
        lifecycle.stop(segments=segments)
        serve.shutdown()  # a later module's serve.start takes its own port (a running Serve keeps its first)


def test_a_policy_replica_killed_under_load_is_replaced_and_no_request_hangs(two_replicas):
    result = asyncio.run(kill_under_load(two_replicas["url"], KEY, "tiny-llm", CLIENTS, SECONDS, KILL_AFTER_S,
                                         TIMEOUT_S))
    killed = set(result["killed_replica_shm"] or [])
    removed = two_replicas["segments"].sweep()  # what the server's sweep does every 30 s
    print(f"\nreplica kill under load (tiny model, 2 replicas): {json.dumps(result)}")
    assert result["replaced_after_s"] is not None, result           # Serve started a new replica
    assert result["failed_before_kill"] == 0, result
    assert result["failed_after_recovery"] == 0 and result["ok_after_recovery"] > 0, result
    assert result["max_latency_s"] < TIMEOUT_S + 1, result          # nothing hung past its timeout
    assert "timeout" not in result["failed_by_kind"], result
    assert result["first_success_after_kill_s"] is not None and result["first_success_after_kill_s"] < TIMEOUT_S
    assert result["failed"] <= CLIENTS, result                      # at most the requests in flight on it
    assert set(result["failed_by_kind"]) <= {"HTTP 503"}, result    # "retry", in the OpenAI format
    assert not [f for f in result["first_failures"] if "actor" in f.lower()], result  # no Ray internals
    assert not result["killed_replica_children_alive"], result      # its engine processes went with it
    assert killed and killed <= set(removed), (killed, removed)  # the dead engine's shared memory
    assert not [path for path in killed if Path(path).exists()]
    assert two_replicas["segments"].holders, "the live replicas' segments are kept"
