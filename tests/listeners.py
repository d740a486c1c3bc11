"""What a process tree listens on: the listening TCP sockets of a process and all its
descendants, and those of them that are not on loopback. Only the tree a test started is looked
at, never every Ray process on the machine (other clusters may run beside it)."""

from __future__ import annotations

import contextlib
import ipaddress
import re

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (those alive now)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback on an IPv6 socket
    return (mapped or address).is_loopback


def listening(procs: list[psutil.Process]) -> list[tuple[int, str, str, int]]:
    """(pid, name, ip, port) of every listening TCP socket of `procs`."""
    found = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            name = " ".join(proc.cmdline()[:1]).rsplit("/", 1)[-1][:40] or proc.name()
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((proc.pid, name, conn.laddr.ip, conn.laddr.port))
    return sorted(set(found))


def exposed(procs: list[psutil.Process]) -> list[str]:
    """'pid name ip:port' of each listening socket of `procs` that is not on loopback."""
    return [f"{pid} {name} {ip}:{port}" for pid, name, ip, port in listening(procs) if not is_loopback(ip)]


def session_dir(procs: list[psutil.Process]) -> str | None:
    """The Ray session folder named on the command line of one of `procs` (the GCS names it)."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for arg in proc.cmdline():
                if match := re.match(r"--session-dir=(.+)", arg):
                    return match.group(1)
    return None


def alive(procs: list[psutil.Process]) -> list[str]:
    """'pid name' of those of `procs` still running (the same processes: start times checked)."""
    left = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {proc.name()}")
    return left
