"""Build hook: compile the product's hot modules with mypyc when it can (the same source files).

`EXPERIMENT_WORKER_COMPILE=0 pip install .` installs pure Python; so does a machine without mypyc
or a C compiler. See README, "Compiled or pure Python".
"""

from __future__ import annotations

import os
import shutil
import sys

from setuptools import setup

# The modules compiled: the core (every rule, run per event), process-file's driver, and the
# runtime's per-record code (the loop, the emitter, the sink, the stores). Package __init__ files stay Python (mypyc needs a real package).
COMPILED = [
    "worker/core/billing.py",
    "worker/core/config.py",
    "worker/core/dedupe.py",
    "worker/core/dlq_limit.py",
    "worker/core/experiments.py",
    "worker/core/identity.py",
    "worker/core/limit.py",
    "worker/core/operations.py",
    "worker/core/pipeline.py",
    "worker/core/reasons.py",
    "worker/core/records.py",
    "worker/core/split.py",
    "worker/core/stores.py",
    "worker/core/values.py",
    "worker/offline.py",
    "worker/runtime/checkpoint.py",
    "worker/runtime/emitter.py",
    "worker/runtime/experiment_names.py",
    "worker/runtime/intake.py",
    "worker/runtime/kv.py",
    "worker/runtime/partitioner.py",
    "worker/runtime/runner.py",
    "worker/runtime/restore.py",
    "worker/runtime/shortcut.py",
    "worker/runtime/sink.py",
    "worker/runtime/stages.py",
    "worker/runtime/state.py",
]


def compiled_extensions() -> list[object]:
    choice = os.environ.get("EXPERIMENT_WORKER_COMPILE", "auto")
    if choice == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if choice == "1":
            raise
        print("experiment-worker: mypyc not available, installing pure Python", file=sys.stderr)
        return []
    if shutil.which(os.environ.get("CC", "cc")) is None and choice != "1":
        print("experiment-worker: no C compiler, installing pure Python", file=sys.stderr)
        return []
    # The shared library lives inside the package (worker/compiled__mypyc…so), not at the top level.
    return list(mypycify(COMPILED, opt_level="3", debug_level="0", group_name="worker.compiled"))


setup(ext_modules=compiled_extensions())
