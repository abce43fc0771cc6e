"""Where the development tools keep their files, and how they write them so that two processes
never see a half-written one: .cache/ (downloads kept between runs) and .run/ (what runs now),
both at the root of the checkout and ignored by git.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO_ROOT / ".cache"
RUN_DIR = REPO_ROOT / ".run"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write `content` to `path` through a rename, so a reader sees the old file or the new one."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    partial.replace(path)
