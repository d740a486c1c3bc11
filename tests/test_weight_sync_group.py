"""The collective weight sync's transport on its own (no Ray, no engines): buckets are planned
alike on both sides, tensors arrive exact and cast, and a peer that dies is a named error."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest
import torch

from rayalign.config import RunConfig
from rayalign.engines.distributed import open_store
from rayalign.engines.weight_sync import ALIGN, BucketSender, join_weight_group, plan_buckets, receive_buckets
from rayalign.pipelines.rl_roles import weight_sync_transport

MANIFEST = [("a", "float32", (3, 4)), ("b", "bfloat16", (5,)), ("big", "float32", (100,)), ("c", "float32", (2,))]


def test_buckets_stay_within_their_size_and_a_larger_tensor_goes_alone():
    buckets = plan_buckets(MANIFEST, 128)
    assert [[slot.name for slot in b.slots] for b in buckets] == [["a", "b"], ["big"], ["c"]]
    assert [b.nbytes for b in buckets] == [ALIGN + 10, 400, 8]
    assert all(slot.offset % ALIGN == 0 for b in buckets for slot in b.slots)


def test_tensors_arrive_exact_and_in_the_manifests_dtype():
    store = open_store("127.0.0.1", 2, 20)
    sent = [torch.randn(3, 4), torch.randn(5), torch.randn(100), torch.randn(2)]
    received = {}

    def engine():
        group = join_weight_group("127.0.0.1", store.port, 1, 2, "gloo", 20)
        received.update({name: tensor.clone() for name, tensor in receive_buckets(group, MANIFEST, 128, "cpu", 1)})

    thread = threading.Thread(target=engine)
    thread.start()
    sender = BucketSender(join_weight_group("127.0.0.1", store.port, 0, 2, "gloo", 20, store), MANIFEST, 128, "cpu")
    for tensor in sent:
        sender.add(tensor)
    assert sender.finish() == 3
    thread.join(20)
    assert list(received) == ["a", "b", "big", "c"]
    assert received["b"].dtype == torch.bfloat16 and torch.equal(received["b"], sent[1].to(torch.bfloat16))
    for name, tensor in zip(("a", "big", "c"), (sent[0], sent[2], sent[3])):
        assert torch.equal(received[name], tensor)


def _join_then_die(port: int) -> None:
    join_weight_group("127.0.0.1", port, 1, 2, "gloo", 20)
    os._exit(1)


def test_a_receiver_that_dies_is_a_named_error_not_a_hang():
    store = open_store("127.0.0.1", 2, 20)
    peer = multiprocessing.get_context("spawn").Process(target=_join_then_die, args=(store.port,))
    peer.start()
    sender = BucketSender(join_weight_group("127.0.0.1", store.port, 0, 2, "gloo", 20, store), MANIFEST, 128, "cpu")
    peer.join(30)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"weight sync \(trainer rank 0 sending\): broadcast of bucket 1/3 .*from a"):
        sender.add(torch.zeros(3, 4))
        sender.add(torch.zeros(5))
    assert time.monotonic() - started < 20


def test_colocated_gpus_sync_through_the_object_store():
    config = RunConfig.model_validate({"method": "rlhf", "name": "t", "data": {"train": "unused"}, "model": {"name_or_path": "m"},
                                       "rewards": [{"type": "function", "path": "m:f"}],
                                       "placement": {"colocate": True}})
    assert weight_sync_transport(config, on_gpu=True) == "object_store"
    assert weight_sync_transport(config, on_gpu=False) == "collective"


def test_the_hf_engine_receives_a_full_sync_in_place(tmp_path):
    from transformers import AutoModelForCausalLM

    from rayalign.config import RolloutConfig
    from rayalign.engines.hf_generation import HfEngine
    from rayalign.models.export import sync_tensors
    from tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path / "tiny")
    engine = HfEngine(folder, RolloutConfig(engine="hf", dtype="float32"))
    trained = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    tensors = sync_tensors(trained, "full")
    manifest = {"tensors": [(t.name, "float32", t.shape) for t in tensors], "adapter_config": None}
    store = open_store("127.0.0.1", 2, 20)
    receiving = threading.Thread(target=lambda: (engine.join_weight_group("127.0.0.1", store.port, 1, 2, "gloo", 20),
                                                 engine.receive_weights(manifest, "full", 1, 2**14)))
    receiving.start()
    sender = BucketSender(join_weight_group("127.0.0.1", store.port, 0, 2, "gloo", 20, store), manifest["tensors"],
                          2**14, "cpu")
    for tensor in tensors:
        sender.add(tensor.compute().detach())
    assert sender.finish() > 1
    receiving.join(20)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.equal(engine.model(ids).logits, trained(ids).logits)
