"""The broker's jars: copied from Maven Central by `mvn` into .cache/kafka/lib once per
deploy/local-kafka/pom.xml (its sha256 is in a marker written last), with the Maven repository
in .cache/maven-repo, so later runs need no network.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from dev.errors import LocalBrokerError
from dev.files import CACHE_DIR, REPO_ROOT, locked
from dev.kafka.config import COMMAND
from dev.kafka.java import require_java

POM = REPO_ROOT / "deploy" / "local-kafka" / "pom.xml"
LIB_DIR = CACHE_DIR / "kafka" / "lib"
MAVEN_REPO = CACHE_DIR / "maven-repo"
COPY_DEPENDENCIES = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
FETCH_TIMEOUT_S = 900.0
FETCH_MARKER = ".fetched.json"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
MAVEN_NETWORK_SIGNS = (
    "could not transfer",
    "unknown host",
    "unknownhost",
    "connection refused",
    "connect timed out",
    "read timed out",
    "network is unreachable",
    "no route to host",
    "pkix",
    "failed to connect",
)


def fetch_jars() -> Path:
    """Copy the broker's runtime jars into LIB_DIR unless they already match pom.xml; return LIB_DIR."""
    pom_sha256 = hashlib.sha256(POM.read_bytes()).hexdigest()
    if jars_ready(LIB_DIR, pom_sha256):
        return LIB_DIR
    with locked(LIB_DIR.parent / "fetch.lock"):
        if not jars_ready(LIB_DIR, pom_sha256):  # another process may have fetched while we waited
            download_jars(pom_sha256)
    return LIB_DIR


def jars_ready(lib_dir: Path, pom_sha256: str) -> bool:
    """True when the marker written after the last complete fetch matches this pom and every jar is there."""
    try:
        marker = json.loads((lib_dir / FETCH_MARKER).read_text())
        jars = list(marker["jars"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return marker.get("pom_sha256") == pom_sha256 and bool(jars) and all((lib_dir / jar).is_file() for jar in jars)


def download_jars(pom_sha256: str) -> None:
    # Into a staging dir, swapped in whole: an interrupted fetch never looks complete, and a pom
    # change never leaves old jar versions beside the new ones on the class path.
    require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalBrokerError(
            "mvn not found on PATH: install Apache Maven 3.6+ (e.g. `apt-get install maven`), which fetches the "
            f"Kafka jars from Maven Central once, then run `{COMMAND} fetch`"
        )
    staging = LIB_DIR.with_name(LIB_DIR.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM),
        COPY_DEPENDENCIES,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
        f"-Dmaven.repo.local={MAVEN_REPO}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LocalBrokerError(f"mvn took over {FETCH_TIMEOUT_S:.0f} s: {maven_fix()}") from exc
    jars = sorted(jar.name for jar in staging.glob("*.jar"))
    if result.returncode != 0 or not jars:
        raise LocalBrokerError(describe_mvn_failure(result.stdout + result.stderr))
    (staging / FETCH_MARKER).write_text(json.dumps({"pom_sha256": pom_sha256, "jars": jars}))
    swap_in(staging)


def swap_in(staging: Path) -> None:
    """Replace LIB_DIR by `staging` with two renames, so the class path never mixes two fetches."""
    previous = LIB_DIR.with_name(LIB_DIR.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if LIB_DIR.exists():
        LIB_DIR.rename(previous)
    staging.rename(LIB_DIR)
    shutil.rmtree(previous, ignore_errors=True)


def maven_fix() -> str:
    return (
        "check access to https://repo.maven.apache.org (or set a proxy or mirror in ~/.m2/settings.xml), "
        f"then run `{COMMAND} fetch` again"
    )


def describe_mvn_failure(output: str) -> str:
    """One line from mvn's output: what failed and what to do about it."""
    lines = [ANSI_ESCAPE.sub("", line).strip() for line in output.splitlines()]
    errors = [line.removeprefix("[ERROR]").removesuffix("-> [Help 1]").strip() for line in lines if "[ERROR]" in line]
    first = next((line for line in errors if line), next((line for line in reversed(lines) if line), "no output"))
    # The root cause is at the end of Maven's long chained message.
    detail = first if len(first) <= 240 else f"{first[:100]} … {first[-130:]}"
    if any(sign in output.lower() for sign in MAVEN_NETWORK_SIGNS):
        return f"cannot download the Kafka jars from Maven Central ({detail}): {maven_fix()}"
    return f"mvn could not copy the Kafka jars ({detail}): check {POM.relative_to(REPO_ROOT)}, then {maven_fix()}"
