"""A real single-node Apache Kafka broker (KRaft) for development, the demo and the integration
tests, without Docker. One module a job:

- `jars`: the broker's jars from Maven Central, cached in .cache/kafka/lib once per pom.xml;
- `java`: a JDK 17+ and the JVM command line;
- `config`: server.properties, ports and cluster id of the one node;
- `process`: the broker process (`LocalBroker`): launch, wait until it answers, stop;
- `node`: start a broker in a fresh data dir, restart one in place;
- `developer`: the broker kept for the developer, recorded in .run/kafka.json;
- `__main__`: `python -m dev.kafka fetch|up|down|status`.
"""

from dev.kafka.developer import recorded_broker
from dev.kafka.node import restart, start_broker
from dev.kafka.process import LocalBroker, answers

__all__ = ["LocalBroker", "answers", "recorded_broker", "restart", "start_broker"]
