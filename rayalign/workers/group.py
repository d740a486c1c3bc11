"""A group of identical actors on a placement group, called together with timeouts.

Failures come back to the driver as `WorkerError` naming the role, the rank and the
cause; an actor that does not answer in time is a timeout error, never a silent hang.
"""

from __future__ import annotations

import time

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


class WorkerError(RuntimeError):
    """A worker failed or timed out; names the role and rank."""


def reserve(bundles: list[dict], timeout_s: float, what: str):
    """A placement group of these bundles, ready; a clear error if the cluster cannot hold it."""
    group = placement_group(bundles, strategy="PACK")
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except GetTimeoutError:
        remove_placement_group(group)
        raise WorkerError(f"{what}: the cluster cannot place {bundles} within {timeout_s:.0f} s "
                          f"(available: {ray.available_resources()})") from None
    return group


class ActorGroup:
    """`size` actors of one role. By default on a placement group of their own; given
    `placement` and `bundles`, on those bundles of a shared group (which the caller owns)."""

    def __init__(self, actor_class, role: str, size: int, cpus: float, gpus: float,
                 timeout_s: float, args_for_rank=lambda rank: (), placement=None, bundles: list[int] | None = None):
        self.role, self.timeout_s = role, timeout_s
        self.owns_placement = placement is None
        if placement is None:
            placement = reserve([{"CPU": cpus, **({"GPU": gpus} if gpus else {})}] * size, timeout_s, role)
            bundles = list(range(size))
        self.placement = placement
        self.actors = [
            actor_class.options(
                num_cpus=cpus, num_gpus=gpus, name=None,
                scheduling_strategy=PlacementGroupSchedulingStrategy(placement,
                                                                     placement_group_bundle_index=bundles[rank]),
            ).remote(*args_for_rank(rank))
            for rank in range(size)
        ]

    def __len__(self) -> int:
        return len(self.actors)

    def gather(self, refs: list, what: str, timeout_s: float | None = None) -> list:
        """The results of `refs`, within `timeout_s` (default: the group's)."""
        return gather_groups([(self, refs)], what, timeout_s or self.timeout_s)[0]

    def call(self, method: str, *args, **kwargs) -> list:
        """The same call on every actor."""
        return self.gather([getattr(a, method).remote(*args, **kwargs) for a in self.actors], method)

    def call_each(self, method: str, per_rank_args: list[tuple]) -> list:
        """Actor i gets per_rank_args[i]."""
        refs = [getattr(a, method).remote(*args) for a, args in zip(self.actors, per_rank_args)]
        return self.gather(refs, method)

    def close(self) -> None:
        """Kill the actors and free their resources; safe to call twice."""
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.placement is not None and self.owns_placement:
            remove_placement_group(self.placement)
        self.placement = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def gather_groups(calls: list[tuple[ActorGroup, list]], what: str, timeout_s: float) -> list[list]:
    """The results of calls made on several groups at once (one list per group), within one
    timeout. The first failure ends the wait, as a `WorkerError` naming its role and rank; a
    dead actor is named before the errors it may cause in its peers (they fail with it)."""
    owner = {ref: (group, rank) for group, refs in calls for rank, ref in enumerate(refs)}
    pending, deadline = list(owner), time.monotonic() + timeout_s
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(deadline - time.monotonic(), 0))
        if not ready:
            silent = ", ".join(f"{group.role} rank {rank}" for group, rank in map(owner.get, pending))
            roles = {group.role for group, _ in map(owner.get, pending)}
            raise WorkerError(f"{'/'.join(sorted(roles))}: {what} gave no answer within {timeout_s:.0f} s "
                              f"({silent})")
        if _failed(ready[0]):
            grace = max(min(FAILURE_GRACE_S, deadline - time.monotonic()), 0)
            late = ray.wait(pending, num_returns=len(pending), timeout=grace)[0] if pending else []
            failures = [ref for ref in ready + late if _failed(ref)]
            _raise_failure(min(failures, key=lambda ref: not _died(ref)), owner, what)
    return [ray.get(refs) for _, refs in calls]


FAILURE_GRACE_S = 1.0   # after a failure, how long to look for a dead actor behind it


def _raise_failure(ref, owner: dict, what: str) -> None:
    group, rank = owner[ref]
    try:
        ray.get(ref)
    except (RayTaskError, RayActorError) as exc:
        raise WorkerError(f"{group.role} rank {rank}: {what} failed: {_describe(exc)}") from exc


def _died(ref) -> bool:
    try:
        ray.get(ref, timeout=0)
    except RayActorError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is not a death
        return False
    return False


def _failed(ref) -> bool:
    try:
        ray.get(ref, timeout=0)
    except GetTimeoutError:
        return False
    except Exception:
        return True
    return False


def _describe(exc: Exception) -> str:
    """`Type: message` of the worker's own exception; for an actor that died while starting,
    the last line of the traceback Ray wraps (where that exception is named)."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause else exc
    text = f"{type(cause).__name__}: {cause}"
    if isinstance(cause, RayActorError) and "creation task" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return f"{type(cause).__name__} while starting: {lines[-1]}"
    return text
