"""The import rule of the functional core (STYLE.md): `worker/core` is pure, so none of its modules
may import Kafka, Avro, Prometheus, the clock, the environment, the network, randomness, or the runtime.
The modules are parsed, not imported, so a forbidden import anywhere (even inside a function) counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import worker.core

CORE = Path(worker.core.__file__).parent
FORBIDDEN = ("confluent_kafka", "fastavro", "prometheus_client", "time", "os", "socket", "random", "datetime",
             "worker.runtime")


def imported_modules(source: str, package: str = "worker.core") -> list[str]:
    """Every module a file of `package` imports, relative imports resolved against the package."""
    parts = package.split(".")
    modules: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            modules.append(module)
            # `from worker import runtime` imports a module too.
            modules.extend(f"{module}.{alias.name}" for alias in node.names)
    return modules


def package_of(path: Path) -> str:
    return ".".join(["worker", "core", *path.relative_to(CORE).parent.parts])


def is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


CORE_FILES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=[str(path.relative_to(CORE)) for path in CORE_FILES])
def test_core_module_imports_nothing_impure(path: Path) -> None:
    modules = imported_modules(path.read_text(encoding="utf-8"), package_of(path))
    assert [module for module in modules if is_forbidden(module)] == []


def test_the_rule_sees_every_kind_of_import() -> None:
    source = (
        "import os.path\nfrom time import monotonic\nimport confluent_kafka as ck\nfrom worker import runtime\n"
        "from ..runtime.settings import Settings\nfrom worker.runtime import metrics\n"
        "def f():\n    import random\n    from datetime import datetime\n"
        "import timeit\nfrom worker.core.values import same_value\nfrom . import values\n"
    )
    modules = imported_modules(source)
    assert {m for m in modules if is_forbidden(m)} == {
        "os.path", "time", "time.monotonic", "confluent_kafka", "worker.runtime", "worker.runtime.settings",
        "worker.runtime.settings.Settings", "worker.runtime.metrics", "random", "datetime", "datetime.datetime",
    }
    assert {"timeit", "worker.core.values", "worker.core.values.same_value", "worker.core"} <= set(modules)


def test_there_are_core_modules_to_check() -> None:
    names = {path.name for path in CORE_FILES}
    assert {"split.py", "pipeline.py", "operations.py", "experiments.py", "values.py"} <= names
