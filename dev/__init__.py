"""Development tools beside the product, never in its wheel: the local Kafka broker (`dev.kafka`),
the load generator, the stress suite (`dev.chaos`), the demo, a local Prometheus, and the helpers
that compare the Kafka path with `process-file` (`dev.verify`). They run from a checkout: they find
their files (.cache/, .run/, deploy/) from their own path, which only a checkout has.
"""
