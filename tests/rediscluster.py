"""A small local Redis Cluster for tests: three `redis-server --cluster-enabled yes` primaries on free
loopback ports (each also needs its bus port, +10000), joined by `redis-cli --cluster create`."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """n ports whose cluster bus ports (+10000) are free as well."""
    found: list[int] = []
    while len(found) < n:
        p = random.randint(20000, 45000)
        if p not in found and _free(p) and _free(p + 10000):
            found.append(p)
    return found


class LocalCluster:
    def __init__(self, workdir: str, nodes: int = 3):
        self.workdir = workdir
        self.ports = free_ports(nodes)
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0?cluster=1"

    def start(self) -> LocalCluster:
        for p in self.ports:
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", os.path.join(self.workdir, f"nodes-{p}.conf"), "--dir", self.workdir,
                 "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in self.ports:
            self._wait(lambda p=p: self._cli(p, "ping") == "PONG", f"redis-server on {p}")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for p in self.ports:
            self._wait(lambda p=p: "cluster_state:ok" in self._cli(p, "cluster", "info"), f"cluster state on {p}")
        return self

    def _cli(self, port: int, *args: str) -> str:
        r = subprocess.run(["redis-cli", "-p", str(port), *args], check=False, capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    @staticmethod
    def _wait(ready, what: str) -> None:
        for _ in range(600):  # polling for readiness, not a timed assertion
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} not ready")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

