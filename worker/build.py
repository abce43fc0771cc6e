"""Which build of the worker is running: the hot modules compiled by mypyc, or pure Python.

Both come from the same source files (setup.py compiles them where a compiler is present). In a
checkout the compiled modules sit beside their sources, so `stale_modules` tells when a source
changed after the last `make build`: the compiled module would then run old code.
"""

from __future__ import annotations

from pathlib import Path

import worker.core.pipeline

PACKAGE = Path(__file__).resolve().parent


def is_compiled() -> bool:
    return not worker.core.pipeline.__file__.endswith(".py")


def describe() -> str:
    return "compiled (mypyc)" if is_compiled() else "pure Python"


def stale_modules() -> list[str]:
    """Sources newer than the compiled shared library beside them (empty when not compiled)."""
    libraries = list(PACKAGE.glob("compiled__mypyc*.so"))
    if not libraries:
        return []
    built = min(library.stat().st_mtime for library in libraries)
    return sorted(str(shim.with_suffix("").with_suffix(".py").relative_to(PACKAGE.parent))
                  for shim in PACKAGE.rglob("*.so") if shim not in libraries
                  and shim.with_suffix("").with_suffix(".py").stat().st_mtime > built)
