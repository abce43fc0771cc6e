"""The experiment-health report: `process-file --flags` prints it after its summary without
changing any output file, and `experiments report --state` prints it from a process-file output
directory, saying that the event counts are not in the state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.cli import main
from worker.core.experiment_health import ExperimentHealth, flag_reports
from worker.core.flags import parse_flags
from worker.errors import InputFileError
from worker.experiment_report import UNKNOWN_FROM_STATE, read_state, report_lines

FLAGS_FILE = {"default": {
    "checkout": {"allocation": {"control": 50, "treatment": 50}, "exposure_event": "Checkout Viewed"},
    "search": {"allocation": {"a": 90, "b": 10}},
    "never": {"allocation": {"x": 1, "y": 1}, "exposure_event": "Never Sent"},
}}
OUTPUTS = ("events.jsonl", "deltas.jsonl", "dlq.jsonl", "state.jsonl")


def line(timestamp: int, user: str, **event: Any) -> str:
    return json.dumps({"timestamp": timestamp, "value": {"user_id": user, **event}})


def exposure(timestamp: int, user: str, flag: str, variant: str) -> str:
    return line(timestamp, user, event_type="$exposure", event_properties={"flag_key": flag, "variant": variant})


@pytest.fixture
def stream(tmp_path: Path) -> tuple[Path, Path]:
    rows = []
    for i in range(40):
        user = f"user-{i:04d}"
        if i % 4 == 0:  # a quarter of the users view checkout before they are exposed
            rows.append(line(1000 + i, user, event_type="Checkout Viewed"))
        rows.append(exposure(2000 + i, user, "checkout", "control" if i % 2 else "treatment"))
        rows.append(exposure(3000 + i, user, "search", "a" if i % 2 else "b"))  # 50/50 on a 90/10 design
        rows.append(line(4000 + i, user, event_type="Checkout Viewed"))
    rows.append(exposure(5000, "user-0001", "checkout", "treatment"))  # a user who moves
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(rows) + "\n")
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(FLAGS_FILE))
    return path, flags


def test_process_file_prints_the_report_and_writes_the_same_files(
    stream: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, flags = stream
    assert main(["process-file", str(path), "--out", str(tmp_path / "plain"), "--now", "0"]) == 0
    assert "experiment health" not in capsys.readouterr().err
    assert main(["process-file", str(path), "--out", str(tmp_path / "flags"), "--now", "0", "--flags", str(flags)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert err[0].startswith("process-file: ") and err[1].startswith("experiment health:")
    report = "\n".join(err)
    assert "default/checkout                 control                 19   47.5%       50.0%" in report
    assert "variant switches 1; custom exposures 'Checkout Viewed' 50, before the experiment property 10 (20.0%)" \
        in report
    assert "SRM p-value 0.752 (chi-square 0.10, 1 dof, 40 users): no mismatch" in report
    assert "(chi-square 71.11, 1 dof, 40 users): MISMATCH" in report  # 20/20 on a 90/10 design
    assert "variant switches 0; no custom exposure event configured" in report
    assert "SRM: no user in an allocated variant yet" in report and "no custom exposure 'Never Sent' seen" in report
    for name in OUTPUTS:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "flags" / name).read_bytes(), name


def test_experiments_report_from_a_process_file_directory(
    stream: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, flags = stream
    main(["process-file", str(path), "--out", str(tmp_path / "out"), "--now", "0", "--flags", str(flags)])
    from_run = [row for row in capsys.readouterr().err.splitlines()[1:] if "variant switches" not in row]
    for state in (tmp_path / "out", tmp_path / "out" / "state.jsonl"):
        assert main(["experiments", "report", "--state", str(state), "--flags", str(flags)]) == 0
        lines = capsys.readouterr().out.splitlines()
        # The same users, shares and p-values as process-file counted; the event counts are not in the state.
        assert [row for row in lines if UNKNOWN_FROM_STATE not in row] == from_run
        assert sum(UNKNOWN_FROM_STATE in row for row in lines) == 3


def test_experiments_report_needs_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state.jsonl").write_text("")
    assert main(["experiments", "report", "--state", str(tmp_path)]) == 2
    assert "no flags configured: give --flags FILE or set flags_file" in capsys.readouterr().err


def test_an_unreadable_state_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "state.jsonl"
    path.write_text('{"key": "default/u:1", "user_properties": {}}\n\n{"key": "default/u:2"}\n')
    with pytest.raises(InputFileError, match=r"state.jsonl line 3: expected"):
        list(read_state(path))
    with pytest.raises(InputFileError, match="absent"):
        list(read_state(tmp_path / "absent"))


def test_report_lines_show_users_outside_the_allocation() -> None:
    flags = parse_flags(FLAGS_FILE)
    health = ExperimentHealth(flags)
    health.load("default/u:1", {"[Experiment] checkout": "holdout"})
    health.load("default/u:2", {"[Experiment] checkout": "control"})
    lines = report_lines(flag_reports(flags, [health.committed]))
    assert any(row.split() == ["(not", "allocated)", "1"] for row in lines)
    assert report_lines([]) == ["experiment health: no flags configured (flags_file)"]
