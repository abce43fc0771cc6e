"""The flags file (worker/core/flags.py, and its reading in settings): the form it accepts, and
one line naming the place for each way it can be wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.cli import main
from worker.config_files import read_flags
from worker.core.flags import OTHER_VARIANT, Flag, FlagsError, parse_flags
from worker.errors import ConfigError
from worker.runtime.settings import load_settings

GOOD = {
    "default": {
        "checkout": {"allocation": {"control": 50, "treatment": 50}, "exposure_event": "Checkout Viewed"},
        "pricing": {"allocation": {"a": 1, "b": 1.5, "c": 2}},
    },
    "shop.eu": {"checkout": {"allocation": {"off": 10, "on": 90}, "exposure_event": "Checkout Viewed"}},
}


def test_a_good_file_becomes_frozen_flags_with_their_look_ups() -> None:
    flags = parse_flags(GOOD)
    assert [(flag.project, flag.key) for flag in flags.flags] == [
        ("default", "checkout"), ("default", "pricing"), ("shop.eu", "checkout")]
    checkout = flags.flags[0]
    assert checkout == Flag("default", "checkout", ("control", "treatment"), (50.0, 50.0), "Checkout Viewed")
    assert checkout.property == "[Experiment] checkout" and checkout.shares() == (0.5, 0.5)
    assert flags.by_property["default"]["[Experiment] pricing"].variants == ("a", "b", "c")
    assert [f.project for f in flags.by_exposure[("shop.eu", "Checkout Viewed")]] == ["shop.eu"]
    assert ("default", "pricing") not in {(f.project, f.key) for fs in flags.by_exposure.values() for f in fs}
    assert bool(flags) and not bool(parse_flags({}))
    with pytest.raises(AttributeError):
        checkout.key = "other"  # type: ignore[misc]


def test_variant_labels_are_bounded_by_the_allocation() -> None:
    flag = parse_flags(GOOD).flags[0]
    assert [flag.label(value) for value in ("control", "treatment", "off", "", 1, True, ["control"])] == [
        "control", "treatment", OTHER_VARIANT, OTHER_VARIANT, OTHER_VARIANT, OTHER_VARIANT, OTHER_VARIANT]


def with_flag(flag: Any) -> dict[str, Any]:
    return {"default": {"f": flag}}


@pytest.mark.parametrize(("document", "message"), [
    ([], "expected a JSON object"),
    ({"bad project!": {}}, "project id 'bad project!'"),
    ({"default": []}, "project 'default': expected an object"),
    ({"default": {" ": {"allocation": {"a": 1, "b": 1}}}}, "must not be blank"),
    (with_flag([]), "flag 'f': expected an object"),
    (with_flag({"allocations": {"a": 1, "b": 1}}), "unknown field 'allocations'"),
    (with_flag({}), "allocation must be an object of two or more"),
    (with_flag({"allocation": {"a": 100}}), "two or more"),
    (with_flag({"allocation": {"a": 1, "b": 0}}), "'b' must be a positive number, got 0"),
    (with_flag({"allocation": {"a": 1, "b": -1}}), "positive number"),
    (with_flag({"allocation": {"a": 1, "b": "50"}}), "positive number"),
    (with_flag({"allocation": {"a": 1, "b": True}}), "positive number"),
    (with_flag({"allocation": {"a": 1, "b": float("inf")}}), "positive number"),
    (with_flag({"allocation": {"a": 1, OTHER_VARIANT: 1}}), "reserved"),
    (with_flag({"allocation": {"a": 1, "": 1}}), "not allowed"),
    (with_flag({"allocation": {"a": 1, "b": 1}, "exposure_event": " "}), "non-blank event type"),
    (with_flag({"allocation": {"a": 1, "b": 1}, "exposure_event": 3}), "non-blank event type"),
    (with_flag({"allocation": {"a": 1, "b": 1}, "exposure_event": "$exposure"}), "not a custom event type"),
    (with_flag({"allocation": {"a": 1, "b": 1}, "exposure_event": "[Experiment] Assignment"}), "not a custom"),
])
def test_each_problem_is_named(document: Any, message: str) -> None:
    with pytest.raises(FlagsError) as caught:
        parse_flags(document)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_reading_the_file_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text('{"default": {"f": {"allocation": {"a": 1}}}}')
    with pytest.raises(ConfigError, match=rf"^flags_file {path}: project 'default', flag 'f': allocation"):
        read_flags(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=rf"^--flags {path}: "):
        read_flags(path, "--flags")


def test_the_setting_reads_the_file_and_a_missing_one_stops_start_up(tmp_path: Path) -> None:
    assert not load_settings().flags()
    path = tmp_path / "flags.json"
    path.write_text('{"default": {"f": {"allocation": {"a": 1, "b": 1}}}}')
    assert [flag.key for flag in load_settings(flags_file=str(path)).flags().flags] == ["f"]
    with pytest.raises(ConfigError, match=r"^setting flags_file \(EXPERIMENT_WORKER_FLAGS_FILE\): .*no such file"):
        load_settings(flags_file=str(tmp_path / "absent.json"))


def test_check_config_rejects_a_bad_flags_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flags.json"
    path.write_text('{"default": {"f": {"allocation": {"a": 1, "b": 0}}}}')
    assert main(["check-config", "--set", f"flags_file={path}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"experiment-worker: flags_file {path}: ")
