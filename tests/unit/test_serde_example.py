"""The analytics-consumer example decodes what the worker's Avro codec writes, with no worker code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from worker.core.values import same_value
from worker.serde import codec_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "read_enriched_avro.py"
EVENT = {"project_id": "default", "event_type": "[Experiment] Exposure", "user_id": "user-1", "time": 5,
         "insert_id": "ins-1", "event_properties": {"[Experiment] Flag Key": "f", "n": [1, 1.0, True, None, 2**70]},
         "user_properties": {"[Experiment] f": "on", "o": {"a": {}}}, "billable": False, "ingested_at": 6,
         "platform": "web"}


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("read_enriched_avro", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_imports_nothing_from_the_worker() -> None:
    source = EXAMPLE.read_text()
    assert "from worker" not in source and "import worker" not in source


def test_example_decodes_the_codecs_bytes() -> None:
    example = load_example()
    decoded = example.decode(codec_for("enriched", "avro").encode(EVENT))
    assert same_value(decoded, EVENT)
