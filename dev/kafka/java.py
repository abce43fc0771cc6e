"""The JVM the local broker runs on: finding a JDK 17+ (JAVA_HOME first, then PATH) and the java
command line, with the flags that keep a broker small and quick to start on a 2-core machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from dev.errors import LocalBrokerError
from dev.files import REPO_ROOT

LOG4J_CONFIG = REPO_ROOT / "deploy" / "local-kafka" / "log4j2.properties"
# Small and quick to start on a 2-core machine; an OOM exits instead of leaving a hung broker.
JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError")
MIN_JAVA = 17


def parse_java_major(version_output: str) -> int | None:
    """17 from `openjdk version "17.0.15"`, 8 from `java version "1.8.0_392"`."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major


def require_java() -> str:
    """The java binary to use; LocalBrokerError naming the fix when there is none, or it is too old."""
    java_home = os.environ.get("JAVA_HOME")
    home_java = Path(java_home, "bin", "java") if java_home else None
    java = str(home_java) if home_java and home_java.is_file() else shutil.which("java")
    if java is None:
        raise LocalBrokerError(
            "java not found on PATH: install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`) "
            "or put its bin/ directory on PATH"
        )
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    major = parse_java_major(output)
    if major is not None and major < MIN_JAVA:
        raise LocalBrokerError(f"{java} is Java {major}, Kafka 4 needs 17+: install a JDK 17+ and put it first on PATH")
    return java


def java_command(java: str, lib_dir: Path, data_dir: Path) -> list[str]:
    """`java` with the broker's flags and class path; the main class and its arguments follow."""
    return [
        java,
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={data_dir}",
        "-cp",
        f"{lib_dir}/*",
    ]
