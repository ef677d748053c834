"""The settings model: secrets from files, the database URL per service with
its options kept, where services find each other, what production refuses,
and how Kafka and Temporal clients get TLS, SASL and API keys."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings.exceptions import SettingsError

from kezek import connections
from kezek.commands.settings_example import example
from kezek.settings import Settings
from services.notifications.runtime import NotificationSettings, build_transports

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg://kezek@db:5432/kezek"
GOOD = dict(_env_file=None, env="production", secret_key="s" * 40, pseudonym_key="p" * 40,
            database_url="postgresql+psycopg://kezek_{service}@db:5432/kezek_{service}",
            public_url="https://kezek.example", service_keys_dir="/run/secrets/kezek-keys",
            data_keys="2027a:" + "A" * 43)


@pytest.fixture
def clean_env(monkeypatch):
    import os
    for key in list(os.environ):
        if key.startswith("KEZEK_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_a_secret_is_read_from_the_file_its_FILE_variable_names(clean_env, tmp_path):
    (tmp_path / "key").write_text("from-a-file\n")
    clean_env.setenv("KEZEK_SECRET_KEY_FILE", str(tmp_path / "key"))
    assert Settings(_env_file=None).secret_key.get_secret_value() == "from-a-file"


def test_a_service_settings_class_reads_its_secrets_from_files_too(clean_env, tmp_path):
    (tmp_path / "token").write_text("sms-token")
    clean_env.setenv("KEZEK_NOTIFICATIONS_SMS_TOKEN_FILE", str(tmp_path / "token"))
    assert NotificationSettings(_env_file=None).sms_token.get_secret_value() == "sms-token"


def test_a_FILE_variable_is_read_from_dotenv_as_well(clean_env, tmp_path):
    (tmp_path / "pw").write_text("q-pass")
    (tmp_path / ".env").write_text(f"KEZEK_QUEUE_DATABASE_PASSWORD_FILE={tmp_path / 'pw'}\n")
    s = Settings(_env_file=tmp_path / ".env", database_url=PG)
    assert s.database_url_for("queue") == "postgresql+psycopg://kezek:q-pass@db:5432/kezek_queue"


def test_a_value_and_its_file_together_are_refused(clean_env, tmp_path):
    (tmp_path / "key").write_text("x")
    clean_env.setenv("KEZEK_SECRET_KEY", "y")
    clean_env.setenv("KEZEK_SECRET_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(SettingsError, match="KEZEK_SECRET_KEY and KEZEK_SECRET_KEY_FILE"):
        Settings(_env_file=None)


def test_an_unreadable_secret_file_names_its_variable(clean_env, tmp_path):
    clean_env.setenv("KEZEK_PSEUDONYM_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="KEZEK_PSEUDONYM_KEY_FILE"):
        Settings(_env_file=None)


def test_the_per_service_database_keeps_the_url_options():
    s = Settings(_env_file=None, database_url=PG + "?sslmode=verify-full&target_session_attrs=read-write")
    assert s.database_url_for("queue") == (
        "postgresql+psycopg://kezek@db:5432/kezek_queue?sslmode=verify-full&target_session_attrs=read-write")


def test_a_templated_url_gives_each_service_its_role_and_password():
    s = Settings(_env_file=None, database_url="postgresql+psycopg://kezek_{service}@db/kezek_{service}?sslmode=require",
                 queue_database_password="p@ss/word", gateway_database_password="g")
    assert s.database_url_for("queue") == \
        "postgresql+psycopg://kezek_queue:p%40ss%2Fword@db/kezek_queue?sslmode=require"
    assert s.database_url_for("gateway") == "postgresql+psycopg://kezek_gateway:g@db/kezek_gateway?sslmode=require"


def test_services_are_reached_at_their_configured_urls():
    s = Settings(_env_file=None, host="0.0.0.0", queue_url="http://queue:8002/")
    assert s.url_of("queue") == "http://queue:8002"
    assert s.url_of("registration") == "http://0.0.0.0:8001"      # unset: this machine
    assert s.portal_url() == "http://0.0.0.0:8000"
    assert Settings(_env_file=None, public_url="https://kezek.kg/").portal_url() == "https://kezek.kg"


def test_production_accepts_a_complete_configuration():
    assert Settings(**GOOD).env == "production"


@pytest.mark.parametrize("change, complaint", [
    (dict(secret_key="dev-only-insecure-secret"), "KEZEK_SECRET_KEY must be set"),
    (dict(pseudonym_key="short"), "KEZEK_PSEUDONYM_KEY must have at least 32"),
    (dict(pseudonym_key="s" * 40), "must differ"),
    (dict(database_url=""), "SQLite is for development"),
    (dict(database_url="sqlite:////srv/k.db"), "SQLite is for development"),
    (dict(database_url="postgresql+psycopg://kezek:postgres@db/kezek"), "well-known default"),
    (dict(queue_database_password="changeme"), "well-known default"),
    (dict(public_url="http://kezek.example"), "KEZEK_PUBLIC_URL must be the portal's https://"),
    (dict(service_keys_dir=""), "KEZEK_SERVICE_KEYS_DIR must be set"),
    (dict(public_url=""), "KEZEK_PUBLIC_URL"),
    (dict(kafka_security_protocol="SASL_SSL"), "KEZEK_KAFKA_SASL_PASSWORD"),
    (dict(data_keys="2027a:short"), "KEZEK_DATA_KEYS: key '2027a'"),
    (dict(queue_data_keys="q"), "KEZEK_QUEUE_DATA_KEYS: "),
])
def test_production_refuses_development_secrets_and_unsafe_defaults(change, complaint):
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**GOOD, **change})


def test_production_refuses_to_seal_a_services_data_without_its_keys():
    from kezek.sealing import KeyringError

    s = Settings(**{**GOOD, "data_keys": ""}, queue_data_keys="q1:" + "B" * 43)
    assert s.keyring_for("queue").current == "q1"
    with pytest.raises(KeyringError, match="KEZEK_VERIFICATION_DATA_KEYS or KEZEK_DATA_KEYS must be set"):
        s.keyring_for("verification")


def test_production_refuses_cookies_without_secure():
    from services.gateway.api import GatewaySettings
    from services.verification.settings import VerificationSettings

    with pytest.raises(ValidationError, match="KEZEK_COOKIE_SECURE"):
        GatewaySettings(**GOOD, cookie_secure=False)
    with pytest.raises(ValidationError, match="KEZEK_VERIFICATION_COOKIE_SECURE"):
        VerificationSettings(**GOOD, verification_cookie_secure=False)


def test_production_refuses_messages_written_to_the_console():
    with pytest.raises(ValueError, match="KEZEK_SMS_GATEWAY_URL"):
        build_transports(Settings(**GOOD), NotificationSettings(_env_file=None))
    with pytest.raises(ValueError, match="SMTP"):
        build_transports(Settings(**GOOD, sms_gateway_url="https://sms.example/send"),
                         NotificationSettings(_env_file=None, email_transport="console"))
    kinds = [type(t).__name__ for t in build_transports(Settings(**GOOD, sms_gateway_url="https://sms.example/send"),
                                                         NotificationSettings(_env_file=None))]
    assert kinds[:2] == ["SmtpEmail", "HttpSms"]


def test_kafka_clients_get_sasl_and_tls_options():
    s = Settings(_env_file=None, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256",
                 kafka_sasl_username="kezek", kafka_sasl_password="pw", kafka_ssl_cafile="/run/secrets/ca.pem")
    assert s.kafka_client_options() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "kezek",
        "sasl_plain_password": "pw", "ssl_cafile": "/run/secrets/ca.pem"}
    assert Settings(_env_file=None).kafka_client_options() == {"security_protocol": "PLAINTEXT"}


def test_every_kafka_client_factory_uses_the_configured_options(monkeypatch):
    """The relay's producer, the idempotent consumers, the topic admin and
    the public webhooks' readers all take the process's Kafka options."""
    import kezek.consumer
    import kezek.relay
    import kafka.admin
    import services.gateway.public.webhooks as webhooks

    seen = {}

    class Fake:
        def __init__(self, *args, **config):
            seen[self.name] = config

        def subscribe(self, *_a, **_k):
            pass

        def list_topics(self):
            return ["t"]

        def partitions_for_topic(self, _topic):
            return {0}

        def close(self):
            pass

    for module, attr in ((kezek.relay, "KafkaProducer"), (kezek.consumer, "KafkaConsumer"),
                         (kafka.admin, "KafkaAdminClient"), (webhooks, "KafkaConsumer")):
        monkeypatch.setattr(module, attr, type(attr, (Fake,), {"name": f"{module.__name__}.{attr}"}))
    monkeypatch.setattr(webhooks, "ensure_topics", lambda *_a, **_k: None)
    connections.configure(Settings(_env_file=None, kafka_security_protocol="SASL_PLAINTEXT",
                                   kafka_sasl_username="u", kafka_sasl_password="p"))
    try:
        from kezek.infra.kafka import ensure_topics
        from services.gateway.public.config import PublicSettings

        kezek.relay.make_producer("b:9092")
        kezek.consumer.IdempotentConsumer(name="n", topics=["t"], bootstrap="b:9092", sessions=None,
                                          outbox=None, handle=lambda session, event: None)
        ensure_topics("b:9092", ["t"])
        webhooks.Dispatcher(None, PublicSettings(_env_file=None)).make_consumer()
    finally:
        connections.configure(Settings(_env_file=None))
    assert len(seen) == 4
    for name, config in seen.items():
        assert config["security_protocol"] == "SASL_PLAINTEXT", name
        assert config["sasl_plain_password"] == "p", name


def test_temporal_clients_get_tls_and_an_api_key(tmp_path):
    from temporalio.service import TLSConfig

    (tmp_path / "ca.pem").write_bytes(b"CA")
    s = Settings(_env_file=None, temporal_tls_ca_file=str(tmp_path / "ca.pem"), temporal_tls_server_name="t.example",
                 temporal_api_key="key")
    options = s.temporal_connect_options()
    assert options["tls"] == TLSConfig(server_root_ca_cert=b"CA", domain="t.example")
    assert options["api_key"] == "key"
    assert Settings(_env_file=None, temporal_api_key="k").temporal_connect_options()["tls"] is True
    assert Settings(_env_file=None).temporal_connect_options() == {}


def test_env_example_is_generated_from_the_settings_classes():
    committed = (ROOT / ".env.example").read_text()
    assert committed == example(), "run `kezek settings-example --output .env.example`"


def test_env_example_lists_every_setting_of_every_service():
    text = example()
    for var in ("KEZEK_SECRET_KEY=", "KEZEK_QUEUE_URL=", "KEZEK_COOKIE_SECURE=", "KEZEK_TRUSTED_PROXIES=",
                "KEZEK_NOTIFICATIONS_SMS_TOKEN=", "KEZEK_TUNDUK_CLIENT_SECRET=", "KEZEK_KAFKA_SASL_PASSWORD=",
                "KEZEK_TEMPORAL_API_KEY=", "# KEZEK_VERIFICATION_COOKIE_SECURE="):
        assert var in text, var
