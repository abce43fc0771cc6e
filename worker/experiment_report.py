"""The experiment-health report (issue 17) of `experiment-worker experiments report` and of
`process-file --flags`: per configured flag, users per variant against the allocation, the SRM
p-value, variant switches and the custom exposures that came before the experiment property.

Users per variant come from user state, so they are exact from any state: a process-file output
directory, or the user-state topic. Switches and early exposures are counted as events flow and
are not in the state: only a `process-file` run (or the worker's metrics) knows them, and the
report says so instead of printing a zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from worker.core.experiment_health import ExperimentHealth, FlagReport, flag_reports
from worker.core.flags import Flags
from worker.core.srm import SRM_ALERT_P_VALUE
from worker.core.values import JsonObject
from worker.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    from worker.runtime.settings import WorkerSettings

STATE_FILE = "state.jsonl"
UNKNOWN_FROM_STATE = "not in the state (see experiment_worker_exposure_before_property_total)"


def report_lines(reports: list[FlagReport], events_known: bool = True) -> list[str]:
    """The report as text lines; `events_known` is False when the counts came from state alone."""
    if not reports:
        return ["experiment health: no flags configured (flags_file)"]
    lines = ["experiment health: users per variant against the allocation (SRM: chi-square goodness of fit)",
             f"  {'project/flag':32} {'variant':16} {'users':>9} {'share':>7} {'allocation':>11}"]
    for report in reports:
        lines += flag_lines(report, events_known)
    return lines


def flag_lines(report: FlagReport, events_known: bool) -> list[str]:
    flag, test = report.flag, report.test
    allocated = sum(report.users)
    name = f"{flag.project}/{flag.key}"
    lines = []
    for variant, users, share in zip(flag.variants, report.users, flag.shares(), strict=True):
        observed = f"{users / allocated:.1%}" if allocated else "-"
        lines.append(f"  {name:32} {variant:16} {users:>9,} {observed:>7} {share:>11.1%}")
        name = ""
    if report.other_users:
        lines.append(f"  {'':32} {'(not allocated)':16} {report.other_users:>9,}")
    if test is None:
        lines.append("    SRM: no user in an allocated variant yet")
    else:
        verdict = "MISMATCH" if test.p_value < SRM_ALERT_P_VALUE else "no mismatch"
        lines.append(f"    SRM p-value {test.p_value:.3g} (chi-square {test.chi_square:.2f}, "
                     f"{test.degrees_of_freedom} dof, {test.users:,} users): {verdict}")
    lines.append("    " + event_line(report, events_known))
    return lines


def event_line(report: FlagReport, events_known: bool) -> str:
    if not events_known:
        return f"variant switches and early custom exposures: {UNKNOWN_FROM_STATE}"
    event = report.flag.exposure_event
    if event is None:
        early = "no custom exposure event configured"
    elif report.custom_exposures:
        share = report.early_exposures / report.custom_exposures
        early = (f"custom exposures {event!r} {report.custom_exposures:,}, before the experiment property "
                 f"{report.early_exposures:,} ({share:.1%})")
    else:
        early = f"no custom exposure {event!r} seen"
    return f"variant switches {report.switches:,}; {early}"


def read_state(path: Path) -> Iterator[tuple[str, JsonObject]]:
    """(user key, properties) from a `state.jsonl` (the `--state-in` format), or from the one in
    a process-file output directory."""
    if path.is_dir():
        path = path / STATE_FILE
    try:
        lines = path.open("rb")
    except OSError as exc:
        raise InputFileError(f"{path}: {exc}") from exc
    with lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                yield str(row["key"]), dict(row["user_properties"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise InputFileError(f"{path} line {number}: expected {{\"key\", \"user_properties\"}}") from exc


def state_reports(flags: Flags, states: Iterator[tuple[str, JsonObject]]) -> list[FlagReport]:
    """The reports of a set of users' states (each user once)."""
    return flag_reports(flags, [ExperimentHealth(flags).load_all(states).committed])


def counted_lines(health: ExperimentHealth) -> list[str]:
    """The report of what one `ExperimentHealth` counted (process-file --flags: every event seen)."""
    return report_lines(flag_reports(health.flags, [health.committed]))


def print_report(settings: WorkerSettings, flags_file: Path | None, state: Path | None) -> None:
    """`experiments report`: the flags of `flags_file` (else the setting's), the users of `state`
    (a process-file output directory or state.jsonl; else the user-state topic, to its end)."""
    from worker.config_files import read_flags

    flags = settings.flags() if flags_file is None else read_flags(flags_file, "--flags")
    if not flags:
        raise ConfigError("experiments report: no flags configured: give --flags FILE or set flags_file")
    if state is not None:
        states = read_state(state)
    else:
        from worker.runtime.experiment_ops import experiment_states

        states = experiment_states(settings, flags)
    print("\n".join(report_lines(state_reports(flags, states), events_known=False)))
