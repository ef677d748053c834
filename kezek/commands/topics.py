"""`kezek topics`: creates Kezek's Kafka topics that are missing, with
KEZEK_KAFKA_PARTITIONS partitions, KEZEK_KAFKA_REPLICATION_FACTOR copies and
KEZEK_KAFKA_MIN_INSYNC_REPLICAS (production: 12, 3 and 2, so that a write
acknowledged with acks=all survives the loss of any one broker). Existing
topics are left as they are. Run it once against a new cluster, before the
relays and consumers (`kezek run` does it for its own broker)."""
from __future__ import annotations

import argparse

from kezek import connections
from kezek.events import aggregates
from kezek.infra.kafka import ensure_topics
from kezek.settings import Settings

PUBLIC_TOPIC_SUFFIX = "public.v1"


def all_topics(settings: Settings) -> list[str]:
    """One topic per aggregate (`<prefix>.<aggregate>`) and the public stream."""
    return [settings.topic(a) for a in aggregates()] + [settings.topic(PUBLIC_TOPIC_SUFFIX)]


def create(settings: Settings) -> list[str]:
    topics = all_topics(settings)
    ensure_topics(settings.kafka_bootstrap, topics, partitions=settings.kafka_partitions,
                  replication_factor=settings.kafka_replication_factor,
                  min_insync_replicas=settings.kafka_min_insync_replicas)
    return topics


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="kezek topics", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    settings = Settings()
    connections.configure(settings)
    topics = create(settings)
    print(f"{len(topics)} topics on {settings.kafka_bootstrap}: {settings.kafka_partitions} partitions, "
          f"replication factor {settings.kafka_replication_factor}, "
          f"min.insync.replicas {settings.kafka_min_insync_replicas} (existing ones left as they are)")
    return 0
