"""Every exception the worker raises on purpose derives from `WorkerError`.

    WorkerError
    ├── ConfigError          a setting is invalid; the message names it (one line)
    ├── InputFileError       a `process-file` input or `--state-in` file is not in the SPEC §11 format
    ├── TopologyError        topics missing or with the wrong partition count / cleanup policy
    ├── DlqLimitExceeded     most input is bad: stop instead of filling the DLQ (SPEC §10)
    ├── KafkaFatalError      a Kafka error that cannot be retried or aborted (classified once)
    ├── KafkaUnreachable     no broker answered (a command at once, `run` after startup_timeout_s)
    └── KafkaCallsHung       too many abandoned librdkafka calls are still blocked: restart

`exit_status` is the command's exit status for each: 2 for a stop on purpose (restarting would fail
the same way), 3 when Kafka could not be reached (restarting later may well work), 4 when only a
restart frees what hung calls hold.

Bad input is not an exception: it becomes a DLQ record with a reason code (worker.core.split).
"""

from __future__ import annotations


class WorkerError(Exception):
    """Root of the worker's own exceptions."""

    exit_status = 2


class ConfigError(WorkerError):
    """A setting is invalid; str(error) is one line that names the setting."""


class InputFileError(WorkerError):
    """An offline input file does not follow the SPEC §11 format."""


class TopologyError(WorkerError):
    """The Kafka topics are not as SPEC §1 requires."""


class DlqLimitExceeded(WorkerError):
    """The DLQ ratio limit tripped: a broken producer or deploy, not a few bad events."""


class KafkaFatalError(WorkerError):
    """A Kafka error that is neither retriable nor abortable."""


class KafkaUnreachable(WorkerError):
    """No broker of `bootstrap_servers` answered; str(error) is one line naming them and the error."""

    exit_status = 3


class KafkaCallsHung(WorkerError):
    """More than `max_hung_calls` abandoned librdkafka calls are blocked, each holding a client."""

    exit_status = 4
