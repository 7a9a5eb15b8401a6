"""Claims: which worker runs a job right now, so that concurrent runs never train a cell twice.

A claim is a file ``<results>/claims/<key>.json`` created with an exclusive create (``O_EXCL``,
atomic on local filesystems and on NFSv3+), holding the owner's host, pid and a token. Its
modification time is the heartbeat: the owner touches it every `HEARTBEAT_SECONDS` while the job
runs. A claim is stale when its owner is gone (same host, pid no longer alive) or its heartbeat
is older than `stale_after`; a stale claim may be taken over by anyone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 30.0
#: a claim whose heartbeat is older than this is stale even when its owner cannot be checked (another host)
STALE_SECONDS = 300.0
#: a claim file being written (empty or partial) is not judged before this age
WRITE_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Claim:
    """A claim this process holds."""

    key: str
    path: Path
    token: str


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class Claims:
    """The claims of one results directory."""

    def __init__(self, directory: Path, stale_after: float = STALE_SECONDS) -> None:
        self.directory = Path(directory)
        self.stale_after = stale_after

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def acquire(self, key: str) -> Claim | None:
        """Claim `key`, taking over a stale claim; None when a live owner holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            claim = self._create(key)
            if claim is not None:
                return claim
            holder = self.holder(key)
            if holder is None:  # released in the meantime
                continue
            if self.stale_reason(holder) is None or not self._take_over(key, holder):
                return None
        return None

    def _create(self, key: str) -> Claim | None:
        path = self.path(key)
        token = uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        now = time.time()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "token": token, "started": now, "heartbeat": now}
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        return Claim(key, path, token)

    def _take_over(self, key: str, stale: dict[str, Any]) -> bool:
        """Move a stale claim aside; False if what was moved turned out to be someone's fresh claim."""
        path = self.path(key)
        aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True  # someone else removed it: try to create ours
        moved = _read(aside)
        if moved is not None and moved.get("token") != stale.get("token"):
            # another worker took it over between our read and our rename: give it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def holder(self, key: str) -> dict[str, Any] | None:
        """The claim on `key` (host, pid, token, started, heartbeat), or None when unclaimed."""
        path = self.path(key)
        try:
            heartbeat = path.stat().st_mtime
        except FileNotFoundError:
            return None
        info = _read(path) or {"unreadable": True}
        return {**info, "heartbeat": heartbeat}

    def stale_reason(self, holder: dict[str, Any]) -> str | None:
        """Why a claim may be taken over, or None while its owner is alive and beating."""
        age = time.time() - float(holder["heartbeat"])
        if holder.get("unreadable"):
            return "unreadable claim" if age > WRITE_GRACE_SECONDS else None
        if holder.get("host") == socket.gethostname() and not pid_alive(int(holder["pid"])):
            return f"its owner (pid {holder['pid']} on {holder['host']}) is gone"
        if age > self.stale_after:
            return f"no heartbeat for {age:.0f} s"
        return None

    def owns(self, claim: Claim) -> bool:
        info = _read(claim.path)
        return info is not None and info.get("token") == claim.token

    def beat(self, claim: Claim) -> bool:
        """Refresh the heartbeat; False when the claim was taken over (it is not ours any more)."""
        if not self.owns(claim):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.utime(claim.path)
        return True

    def release(self, claim: Claim) -> None:
        if self.owns(claim):
            claim.path.unlink(missing_ok=True)

    def clear(self, key: str, pid: int | None = None) -> None:
        """Remove the claim of a worker known to be dead: process `pid` on this host, or whoever holds it."""
        holder = self.holder(key)
        if holder is None:
            return
        if pid is None or (holder.get("pid") == pid and holder.get("host") == socket.gethostname()):
            self.path(key).unlink(missing_ok=True)

    @contextlib.contextmanager
    def heartbeat(self, claim: Claim, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
        """Beat in a background thread while the body runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every) and self.beat(claim):
                pass

        thread = threading.Thread(target=beat, name=f"claim-{claim.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
