"""One real `tributary dev`, built from this checkout, for the whole session.

It listens on fixed ports (DESIGN.md §4), so the fixture first waits
(bounded) for another engineer's `tributary dev` to go away, then starts its
own in a temporary data directory and waits until every service's admin
/readyz answers 200. SIGINT stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pytest

import tributary

REPO = Path(__file__).resolve().parents[3]
ADMIN_PORTS = range(8081, 8087)
GRPC_PORTS = (9101, 9102, 9103, 9104)
USERS = [f"u{i:05d}" for i in range(1, 41)]
CLICKS = "user_clicks:click_count_1h"
T = TypeVar("T")


def eventually(what: str, timeout: float, probe: Callable[[], T | None], every: float = 1.0) -> T:
    """Calls probe until it returns something other than None, at most
    `timeout` seconds; fails naming `what` and the last error otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            got = probe()
            if got is not None:
                return got
        except Exception as err:  # the probe's failure is reported if time runs out
            last = err
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s (last error: {last!r})")
        time.sleep(every)


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Dev:
    """The running `tributary dev`: its binary and its data directory."""

    binary: Path
    data_dir: Path


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """A running `tributary dev` with its demo workload."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: the tests build tributary from this checkout")
    eventually(
        "the ports of another tributary dev to be free (8081-8086, 9101-9104)",
        float(os.environ.get("TRIBUTARY_SDK_PORT_WAIT", "600")),
        lambda: True if not any(_port_busy(p) for p in (*ADMIN_PORTS, *GRPC_PORTS)) else None,
        every=5,
    )
    tmp = tmp_path_factory.mktemp("dev")
    binary = tmp / "tributary"
    subprocess.run(
        [go, "build", "-o", str(binary), "./cmd/tributary"], cwd=REPO, check=True, timeout=600
    )
    log = (tmp / "dev.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "dev", "--data-dir", str(tmp / "data"), "--summary-every", "1h"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool | None:
            if proc.poll() is not None:
                raise RuntimeError(f"tributary dev exited with {proc.returncode}; see {log.name}")
            return True if all(_ready(p) for p in ADMIN_PORTS) else None

        eventually("tributary dev ready (/readyz on 8081-8086)", 180, up)
        yield Dev(binary=binary, data_dir=tmp / "data")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def client(dev: Dev) -> Iterator[tributary.Client]:
    with tributary.Client(timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def postgres_demo() -> bool:
    """Whether `tributary dev` can capture a PostgreSQL (it needs initdb):
    without one it skips CDC, so there are no users or transactions."""
    return (
        any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb") is not None
    )


@pytest.fixture(scope="session")
def present_user(client: tributary.Client) -> str:
    """A demo user whose click count is served (the demo's clicks flow
    without PostgreSQL too)."""

    def probe() -> str | None:
        df = client.get_online_features([CLICKS], [{"user_id": u} for u in USERS], with_status=True)
        hit = df[df["user_clicks__click_count_1h__status"] == "PRESENT"]
        return None if hit.empty else str(hit["user_id"].iloc[0])

    return eventually("a demo user with a PRESENT click count", 180, probe)


@pytest.fixture(scope="session")
def archive_ready(client: tributary.Client, present_user: str) -> None:
    """Waits until the archive's first files answer a training set: the
    present user's clicks are PRESENT at now."""

    def probe() -> bool | None:
        spine = pd.DataFrame(
            {"user_id": [present_user], "event_timestamp": [pd.Timestamp.now(tz="UTC")]}
        )
        ts = client.get_training_set(spine, [CLICKS])
        return True if ts.loc[0, "user_clicks__click_count_1h__status"] == "PRESENT" else None

    eventually("a PRESENT row in a training set (the archive's first files)", 240, probe, 5)
