"""experiment-worker: Amplitude-style experiment-event ingestion on Apache Kafka.

`worker.core` holds every rule of SPEC.md as pure functions; `worker.runtime` is the Kafka shell;
`worker.offline` runs the same core over a JSON Lines file (`process-file`).
"""

__version__ = "0.1.0"
