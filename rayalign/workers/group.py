"""A group of identical actors on a placement group, called together with timeouts.

Failures come back to the driver as `WorkerError` naming the role, the rank and the
cause; an actor that does not answer in time is a timeout error, never a silent hang.
"""

from __future__ import annotations

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
        timeout_s = timeout_s or self.timeout_s
        try:
            return ray.get(refs, timeout=timeout_s)
        except GetTimeoutError:
            raise WorkerError(f"{self.role}: {what} gave no answer within {timeout_s:.0f} s") from None
        except (RayTaskError, RayActorError) as exc:
            rank = next((i for i, ref in enumerate(refs) if _failed(ref)), "?")
            raise WorkerError(f"{self.role} rank {rank}: {what} failed: {_describe(exc)}") from exc

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
