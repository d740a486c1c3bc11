"""Start the serving application on the connected Ray cluster, and stop it without leaks.

`start` returns once every deployment is running (engines loaded; serve.run waits for that),
or raises with the deployment's own error. `stop` removes what vLLM leaves behind: each engine
keeps two shared-memory segments (/dev/shm/psm_*, about 400 MiB) that outlive its processes
when Serve shuts the replica down. We note the segments the engine processes of this
application have mapped, shut down, then unlink those that are left.
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


def engine_shared_memory(name: str = APP_NAME) -> set[str]:
    """The /dev/shm/psm_* segments mapped by the policy replicas of application `name` on this
    machine and by their engine processes."""
    marker = f"ray::ServeReplica:{name}:RunFolderLLMServer:"
    segments = set()
    for replica in psutil.process_iter(["cmdline"]):
        if not (replica.info["cmdline"] or [""])[0].startswith(marker):
            continue
        try:
            for proc in [replica, *replica.children(recursive=True)]:
                segments.update(m.path for m in proc.memory_maps() if m.path.startswith("/dev/shm/psm_"))
        except psutil.Error:
            continue
    return segments


def stop(name: str = APP_NAME, timeout_s: float = 90.0) -> list[str]:
    """Delete the application (other applications on the cluster keep running) and remove its
    engines' leftover segments; the paths removed. The wait for the replicas to go is bounded
    by `timeout_s`: an engine slow to shut down on a loaded machine does not hold Ctrl-C up
    (a cluster started for the server ends with it anyway)."""
    segments = engine_shared_memory(name)
    serve.delete(name, _blocking=False)
    deadline = time.monotonic() + timeout_s
    while name in serve.status().applications:
        if time.monotonic() > deadline:
            say(f"[serve] {name} still shutting down after {timeout_s:.0f} s; not waiting for it")
            break
        time.sleep(0.5)
    removed = []
    for path in sorted(segments):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed
