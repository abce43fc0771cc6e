"""The files a setting or a flag names (projects, flags): read, checked, and any fault reported as
one line naming the setting. Kept apart from runtime/settings.py so that `process-file`, which
reads them too, does not import pydantic (about 0.2 s of its start)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import orjson

from worker.core.flags import Flags, FlagsError, parse_flags
from worker.core.identity import is_project_id
from worker.errors import ConfigError


def read_projects(path: Path, setting: str = "projects_file") -> Mapping[str, str]:
    """A projects file: a JSON object api_key → project_id. Errors name `setting`."""
    try:
        projects = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"{setting} {path}: {exc}") from exc
    if type(projects) is not dict or not all(type(value) is str for value in projects.values()):
        raise ConfigError(f"{setting} {path}: expected a JSON object mapping api_key to project_id")
    for project in projects.values():
        if not is_project_id(project):
            raise ConfigError(f"{setting} {path}: project id {project!r} does not match [A-Za-z0-9_.-]+")
    return projects


def read_flags(path: Path, setting: str = "flags_file") -> Flags:
    """A flags file (worker/core/flags.py has its form). Errors are one line naming `setting`."""
    try:
        return parse_flags(orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, FlagsError) as exc:
        raise ConfigError(f"{setting} {path}: {exc}") from exc
