"""A single-node Apache Kafka broker in KRaft combined mode, run with Java 17
from the jars `deploy/kafka/pom.xml` fetched from Maven Central (see
`deploy/local/bootstrap.sh`). Sized for a 2-core box (INFRA.md)."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kezek.infra.procs import free_port, port_open, stop_process, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """A KRaft cluster id (base64 of 16 bytes). One that begins with '-'
    would be read by the storage tool as an option, so none does."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cluster_id[0] != "-":
            return cluster_id


def kafka_libs() -> Path:
    return Path(os.environ.get("KEZEK_KAFKA_LIBS", PROJECT_ROOT / "var" / "kafka-libs"))


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise FileNotFoundError("java not found: run deploy/local/bootstrap.sh")
    return found


@dataclass
class KafkaBroker:
    state_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    partitions: int = 3
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self) -> str:
        data = self.state_dir / "data"
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={self.partitions}",
            "auto.create.topics.enable=true",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "group.initial.rebalance.delay.ms=0",
            # Small-box settings: the cleaner's default buffer is 128 MB.
            "log.cleaner.dedupe.buffer.size=2097152",
            "num.network.threads=2",
            "num.io.threads=2",
            "background.threads=2",
            "num.recovery.threads.per.data.dir=1",
            "log.retention.hours=168",
            "",
        ])

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            java(), "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.xml'}",
            "-cp", f"{kafka_libs()}/*", main, *args,
        ]

    def start(self, timeout: float = 120) -> "KafkaBroker":
        if not any(kafka_libs().glob("kafka_2.13-*.jar")):
            raise FileNotFoundError(f"Kafka jars missing in {kafka_libs()}: run deploy/local/bootstrap.sh")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        props = self.state_dir / "server.properties"
        props.write_text(self.properties())
        (self.state_dir / "log4j2.xml").write_text(LOG4J2.format(log=self.state_dir / "server.log"))
        if not (self.state_dir / "data" / "meta.properties").exists():
            cluster_id = new_cluster_id()
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "--standalone", "-g", "-t", cluster_id, "-c", str(props)),
                check=True, capture_output=True, timeout=120,
            )
        out = open(self.state_dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        # The client port opens only once the broker is ready.
        wait_until(lambda: port_open(self.port), timeout, "Kafka broker", self.proc)
        return self

    def stop(self, hard: bool = False) -> None:
        stop_process(self.proc, timeout=30, hard=hard)
        self.proc = None
        wait_until(lambda: not port_open(self.port), 30, "Kafka broker shutdown")


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3) -> None:
    """Creates missing topics, so consumers can subscribe before the first event."""
    from kafka.admin import KafkaAdminClient, NewTopic

    from kezek import connections

    admin = KafkaAdminClient(**connections.kafka(bootstrap_servers=bootstrap, client_id="kezek-admin"))
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except Exception as exc:  # another process created it meanwhile
                if "TopicAlreadyExists" not in repr(exc):
                    raise
    finally:
        admin.close()
