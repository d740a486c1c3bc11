"""Start the serving application on the connected Ray cluster, and stop it without leaks.

`start` returns once every deployment is running (engines loaded; serve.run waits for that),
or raises with the deployment's own error. `stop` removes what vLLM leaves behind: each engine
keeps two shared-memory segments (/dev/shm/psm_*, about 400 MiB) that outlive its processes
when Serve shuts the replica down, or when the replica dies. We note the segments the engine
processes of this application map, remove those of a replica that has died while serving
(`EngineSegments.sweep`), and at the end shut down, then unlink those that are left.
"""

from __future__ import annotations

import os
import time

import psutil
from ray import serve

from rayalign.console import say
from rayalign.serving.app import build_app
from rayalign.serving.settings import APP_NAME


def start(args: dict, host: str = "127.0.0.1", port: int = 8000, name: str = APP_NAME) -> str:
    """Deploy the application built from `args` (the ServeSettings); its base URL."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(args), name=name, route_prefix="/")
    return f"http://{host}:{port}"


def _mapped_segments(name: str):
    """(process, path) for each /dev/shm/psm_* segment mapped by a policy replica of application
    `name` on this machine or by one of its engine processes."""
    marker = f"ray::ServeReplica:{name}:RunFolderLLMServer:"
    for replica in psutil.process_iter(["cmdline"]):
        if not (replica.info["cmdline"] or [""])[0].startswith(marker):
            continue
        try:
            yield from segments_mapped_by([replica, *replica.children(recursive=True)])
        except psutil.Error:
            continue


def segments_mapped_by(procs: list[psutil.Process]):
    """(process, path) for each vLLM /dev/shm/psm_* segment these processes map (not Ray's
    object store); a process that has gone is skipped."""
    for proc in procs:
        try:
            regions = proc.memory_maps()
        except psutil.Error:
            continue
        yield from ((proc, region.path) for region in regions if region.path.startswith("/dev/shm/psm_"))


def engine_shared_memory(name: str = APP_NAME) -> set[str]:
    """The /dev/shm/psm_* segments the policy replicas of application `name` and their engine
    processes have mapped now."""
    return {path for _, path in _mapped_segments(name)}


class EngineSegments:
    """The engine segments of an application seen so far, with the processes that mapped each.
    A replica that dies (killed, out of memory) leaves its two behind while Serve starts a new
    one with segments of its own: `sweep` removes those whose processes have all gone."""

    def __init__(self, name: str = APP_NAME):
        self.name = name
        self.holders: dict[str, set[psutil.Process]] = {}

    def note(self) -> None:
        for proc, path in _mapped_segments(self.name):
            self.holders.setdefault(path, set()).add(proc)

    def sweep(self) -> list[str]:
        """Note what is mapped now, then remove the segments nobody that mapped them is left
        to use; the paths removed."""
        self.note()
        orphaned = [path for path, procs in self.holders.items() if not any(_alive(p) for p in procs)]
        return self.remove(orphaned)

    def remove(self, paths) -> list[str]:
        removed = []
        for path in sorted(paths):
            self.holders.pop(path, None)
            try:
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                continue
        return removed


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop(name: str = APP_NAME, timeout_s: float = 90.0, segments: EngineSegments | None = None) -> list[str]:
    """Delete the application (other applications on the cluster keep running) and remove its
    engines' leftover segments (those `segments` saw over the server's life, and those mapped
    now); the paths removed. The wait for the replicas to go is bounded by `timeout_s`: an
    engine slow to shut down on a loaded machine does not hold Ctrl-C up (a cluster started for
    the server ends with it anyway)."""
    segments = segments or EngineSegments(name)
    segments.note()
    serve.delete(name, _blocking=False)
    deadline = time.monotonic() + timeout_s
    while name in serve.status().applications:
        if time.monotonic() > deadline:
            say(f"[serve] {name} still shutting down after {timeout_s:.0f} s; not waiting for it")
            break
        time.sleep(0.5)
    return segments.remove(list(segments.holders))
