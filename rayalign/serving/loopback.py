"""Serve replicas of a loopback cluster listen on loopback too.

Ray Serve 2.60 starts an inter-deployment gRPC server in every replica on `[::]:0` (all
interfaces), whatever address the node has (ray/serve/_private/replica.py, `_on_initialized`).
On a node whose address is loopback (the local cluster rayalign starts, the head of
cluster/start-head.sh) nothing outside the machine can use it, so it is bound to 127.0.0.1
there; on a node with a reachable address it stays as Ray has it (other nodes call it).
Applied when this package is imported, which a replica does when it loads rayalign's
deployment classes, before that server starts (Serve's replica module is loaded by then; in
any other process this does nothing).
"""

from __future__ import annotations

import sys

ALL_INTERFACES = "[::]:"


def bind_replica_servers_to_loopback() -> None:
    replica = sys.modules.get("ray.serve._private.replica")
    if replica is None or getattr(replica.add_port_to_grpc_server, "_rayalign", False):
        return
    original = replica.add_port_to_grpc_server

    def add_port(server, address: str):
        if address.startswith(ALL_INTERFACES) and _node_is_loopback():
            address = "127.0.0.1:" + address[len(ALL_INTERFACES):]
        return original(server, address)

    add_port._rayalign = True
    replica.add_port_to_grpc_server = add_port


def _node_is_loopback() -> bool:
    import ray

    try:
        return ray.util.get_node_ip_address() in ("127.0.0.1", "::1")
    except Exception:  # not in a Ray worker: leave Ray's choice
        return False
