"""Apache Kafka in KRaft combined mode, run with Java 17 from the jars
`deploy/kafka/pom.xml` fetched from Maven Central (see
`deploy/local/bootstrap.sh`): one broker, or a cluster of brokers on
loopback. Sized for a 2-core box."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kezek.infra.procs import die_with_parent, free_port, port_open, stop_process, wait_until

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
    """One broker. Alone (`voters` None) it is its own controller quorum;
    in a cluster every node names the same static quorum (`voters`) and is
    formatted with the same cluster id (see KafkaCluster)."""

    state_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    partitions: int = 3
    replication_factor: int = 1
    min_insync_replicas: int = 1
    node_id: int = 1
    voters: str | None = None        # controller.quorum.voters of a cluster
    cluster_id: str | None = None
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self) -> str:
        data = self.state_dir / "data"
        rf, isr = self.replication_factor, self.min_insync_replicas
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        if self.voters:
            quorum = [f"controller.quorum.voters={self.voters}",
                      f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}"]
        else:
            quorum = [f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                      f"advertised.listeners={listeners}"]
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            *quorum,
            f"listeners={listeners}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={self.partitions}",
            "auto.create.topics.enable=true",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=1",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={isr}",
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

    def launch(self) -> "KafkaBroker":
        """Formats the node the first time, then starts it without waiting."""
        if not any(kafka_libs().glob("kafka_2.13-*.jar")):
            raise FileNotFoundError(f"Kafka jars missing in {kafka_libs()}: run deploy/local/bootstrap.sh")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        props = self.state_dir / "server.properties"
        props.write_text(self.properties())
        (self.state_dir / "log4j2.xml").write_text(LOG4J2.format(log=self.state_dir / "server.log"))
        if not (self.state_dir / "data" / "meta.properties").exists():
            standalone = [] if self.voters else ["--standalone"]
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", *standalone, "-g",
                           "-t", self.cluster_id or new_cluster_id(), "-c", str(props)),
                check=True, capture_output=True, timeout=120,
            )
        out = open(self.state_dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)
        out.close()
        return self

    def wait_ready(self, timeout: float = 120) -> "KafkaBroker":
        # The client port opens only once the broker is ready.
        wait_until(lambda: port_open(self.port), timeout, "Kafka broker", self.proc)
        return self

    def start(self, timeout: float = 120) -> "KafkaBroker":
        return self.launch().wait_ready(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive() else None

    def stop(self, hard: bool = False, timeout: float = 30) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after `timeout`; returns
        once the process is gone, so its ports are free."""
        stop_process(self.proc, timeout=timeout, hard=hard)
        self.proc = None


@dataclass
class KafkaCluster:
    """`size` brokers on loopback in KRaft combined mode sharing one static
    controller quorum: topics replicated `replication_factor` times, writes
    acknowledged by `min_insync_replicas` of them (INFRA: about 5 s to answer
    on 2 cores, 128-384 MB heap each)."""

    state_dir: Path
    size: int = 3
    partitions: int = 3
    replication_factor: int = 3
    min_insync_replicas: int = 2
    brokers: list[KafkaBroker] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.brokers:
            return
        id_file = self.state_dir / "cluster-id"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        cluster_id = id_file.read_text().strip()
        ports = [(free_port(), free_port()) for _ in range(self.size)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{c}" for n, (_, c) in enumerate(ports))
        self.brokers = [
            KafkaBroker(self.state_dir / f"node-{n + 1}", port=p, controller_port=c, partitions=self.partitions,
                        replication_factor=self.replication_factor, min_insync_replicas=self.min_insync_replicas,
                        node_id=n + 1, voters=voters, cluster_id=cluster_id)
            for n, (p, c) in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self, timeout: float = 180) -> "KafkaCluster":
        # Every node first: none opens its port before the quorum has a leader.
        for b in self.brokers:
            b.launch()
        for b in self.brokers:
            b.wait_ready(timeout)
        return self

    def stop(self, hard: bool = False) -> None:
        for b in self.brokers:
            try:
                b.stop(hard=hard)
            except Exception:
                pass


def ensure_topics(bootstrap: str, topics: list[str], partitions: int | None = None,
                  replication_factor: int | None = None, min_insync_replicas: int | None = None) -> None:
    """Creates missing topics, so consumers can subscribe before the first
    event. What is not given is the cluster's default (num.partitions,
    default.replication.factor, min.insync.replicas); an existing topic is
    left as it is."""
    from kafka.admin import KafkaAdminClient

    from kezek import connections

    admin = KafkaAdminClient(**connections.kafka(bootstrap_servers=bootstrap, client_id="kezek-admin"))
    try:
        existing = set(admin.list_topics())
        configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}
        missing = {t: {"num_partitions": partitions or -1, "replication_factor": replication_factor or -1,
                       "configs": configs}
                   for t in topics if t not in existing}
        if missing:
            try:
                admin.create_topics(missing)
            except Exception as exc:  # another process created it meanwhile
                if "TopicAlreadyExists" not in repr(exc):
                    raise
    finally:
        admin.close()
