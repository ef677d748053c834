"""Configuration, validated at start-up and passed down (never read at import).

Every field can be set as an environment variable `KEZEK_<NAME>`, as a line
in `.env`, or read from a file named by `KEZEK_<NAME>_FILE` (how Docker and
Kubernetes hand over secrets). `.env.example` lists them all; it is generated
from the settings classes by `kezek settings-example`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from kezek.sealing import Keyring

SERVICES = ("registration", "queue", "verification", "notifications", "gateway")
# The services that hold personal data, sealed with their data keys (the gateway keeps none).
SEALING_SERVICES = ("registration", "queue", "verification", "notifications")
DEV_SECRET = "dev-only-insecure-secret"
# Passwords an operator may have left from an example; refused in production.
WELL_KNOWN_PASSWORDS = {"postgres", "password", "secret", "kezek", "changeme", "admin", "temporal", DEV_SECRET}
MIN_SECRET_LENGTH = 32
# The topics' prefix of a deployment alone on its broker; its consumer groups
# keep their bare names (kezek.consumer.group_for), as they always had.
DEFAULT_TOPIC_PREFIX = "kezek"


def split_names(raw: str) -> tuple[str, ...]:
    """A comma-separated setting's names, blanks dropped."""
    return tuple(name for part in raw.split(",") if (name := part.strip()))


def _counts_of(raw: str, fits, expected: str) -> dict[str, int]:
    """A setting of comma-separated NAME=N pairs: {name: N}, each pair's
    name and N checked by `fits`; ValueError naming the first that is not
    `expected`."""
    counts: dict[str, int] = {}
    for pair in split_names(raw):
        name, sep, count = (part.strip() for part in pair.partition("="))
        if not sep or not count.isdigit() or not fits(name, int(count)):
            raise ValueError(f"{pair!r} is not {expected}")
        counts[name] = int(count)
    return counts


def replicas_of(raw: str) -> dict[str, int]:
    """`run_consumer_replicas`: {service: processes}."""
    return _counts_of(raw, lambda service, n: service in SERVICES and n >= 1,
                      f"SERVICE=N with one of {', '.join(SERVICES)} and N of at least 1")


def niceness_of(raw: str) -> dict[str, int]:
    """`run_nice`: {process name: niceness}."""
    return _counts_of(raw, lambda name, n: bool(name) and n <= 19,
                      "NAME=N with a process of `kezek run` and N from 0 to 19")


# Set by `kezek run` itself (KEZEK_POSTGRES_PORT, the state folder).
POSTGRES_OWN_SETTINGS = ("port", "listen_addresses", "unix_socket_directories")


def postgres_settings_of(raw: str) -> dict[str, str]:
    """`run_postgres_settings`: {server setting: value}."""
    settings: dict[str, str] = {}
    for pair in split_names(raw):
        name, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_.]*", name) or not re.fullmatch(r"[\w.:/+-]+", value):
            raise ValueError(f"{pair!r} is not NAME=VALUE with a PostgreSQL setting's name and a value "
                             "without spaces, quotes or commas")
        if name in POSTGRES_OWN_SETTINGS:
            raise ValueError(f"{name!r} is set by `kezek run` itself")
        settings[name] = value
    return settings


class FileSettingsSource(PydanticBaseSettingsSource):
    """`<PREFIX><NAME>_FILE=path`: the field's value is the file's content
    (one trailing newline dropped). Setting both the value and the file is
    refused, so that an operator never wonders which one won."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: dict[str, str | None]):
        super().__init__(settings_cls)
        self.dotenv = {k.upper(): v for k, v in dotenv.items() if v is not None}

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = (self.config.get("env_prefix") or "").upper()
        env = {**self.dotenv, **{k.upper(): v for k, v in os.environ.items()}}
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            key = f"{prefix}{name.upper()}"
            path = env.get(f"{key}_FILE")
            if not path:
                continue
            if env.get(key):
                raise SettingsError(f"{key} and {key}_FILE are both set; keep one")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(f"{key}_FILE: cannot read {path} ({exc.strerror})") from exc
            values[name] = text[:-1] if text.endswith("\n") else text
        return values


class KezekSettings(BaseSettings):
    """Adds `<NAME>_FILE` to every field of a settings class."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        dotenv = getattr(dotenv_settings, "env_vars", {}) or {}
        return (init_settings, FileSettingsSource(settings_cls, dotenv), env_settings, dotenv_settings,
                file_secret_settings)


class Settings(KezekSettings):
    """Shared by every process."""

    model_config = SettingsConfigDict(env_prefix="KEZEK_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    # Holiday calendar and time zone: KG (Asia/Bishkek) or KZ (Asia/Almaty)
    country: Literal["KG", "KZ"] = "KG"
    # Where local state lives: SQLite files, compiled catalogs, Temporal's and Kafka's data under `kezek run`
    state_dir: Path = Path("var")
    # Empty: one SQLite file per service under state_dir (development only).
    # A PostgreSQL URL: one database per service, named kezek_<service>, or
    # `{service}` where the URL says so (user and database), e.g.
    # postgresql+psycopg://kezek_{service}@db:5432/kezek_{service}?sslmode=verify-full
    # The query string (sslmode, target_session_attrs ...) is kept.
    database_url: str = ""
    # Each service's database password, used when database_url carries none
    registration_database_password: SecretStr = SecretStr("")
    queue_database_password: SecretStr = SecretStr("")
    verification_database_password: SecretStr = SecretStr("")
    notifications_database_password: SecretStr = SecretStr("")
    gateway_database_password: SecretStr = SecretStr("")
    # PostgreSQL connections a process keeps open to each database it uses
    # (as many more are opened for a burst and closed after it): at least
    # the work it does at once (an API's requests, a consumer's threads)
    db_pool_size: int = Field(default=10, ge=1, le=100)
    # Comma-separated host:port list
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Topics are <prefix>.<aggregate> (kezek.referral, ...) and <prefix>.public.v1;
    # consumer groups are <prefix>.<name> for a prefix other than this default
    kafka_topic_prefix: str = DEFAULT_TOPIC_PREFIX
    # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL, for every producer, consumer and admin client
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (with a SASL_* protocol)
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # PEM files for SSL / SASL_SSL: the brokers' CA, and a client certificate and key for mutual TLS
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    # Partitions of each topic Kezek creates: how many replicas of one consumer can share its work
    kafka_partitions: int = 12
    # Brokers holding a copy of each partition (`kezek run`'s single local broker uses 1)
    kafka_replication_factor: int = 3
    # Copies that must have a write before the broker acknowledges it (acks=all; `kezek run`: 1)
    kafka_min_insync_replicas: int = 2
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "referrals"
    # TLS to the Temporal frontend (implied by a CA, a client certificate or an API key)
    temporal_tls: bool = False
    # PEM files: the server's CA (empty: the system's), a client certificate and key for mutual TLS
    temporal_tls_ca_file: str = ""
    temporal_tls_cert_file: str = ""
    temporal_tls_key_file: str = ""
    # The name the server's certificate is checked against (empty: the host of temporal_address)
    temporal_tls_server_name: str = ""
    # An API key (Temporal Cloud, or a server with an authorizer), sent as a bearer token
    temporal_api_key: SecretStr = SecretStr("")
    # Signs sessions, activation links and tokens. A long random value in production
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    # Keys the pseudonymous ids of the public event stream. Never share it; changing it renames every child
    pseudonym_key: SecretStr = SecretStr(DEV_SECRET)
    # Interface the HTTP services listen on, and their ports
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    registration_port: int = 8001
    queue_port: int = 8002
    verification_port: int = 8003
    notifications_port: int = 8004
    temporal_ui_port: int = 8233
    # Where the other services reach each one; empty: http://<host>:<port>, i.e. this machine
    registration_url: str = ""
    queue_url: str = ""
    verification_url: str = ""
    notifications_url: str = ""
    gateway_url: str = ""
    # How parents reach the portal (links in e-mails and SMS); empty: the gateway's own address
    public_url: str = ""
    # Outgoing e-mail
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    # HTTP SMS gateway; empty: SMS are written to the console channel (refused in production)
    sms_gateway_url: str = ""
    # The development mailbox's page and SMS gateway (`kezek run` starts it with SMTP on smtp_port
    # and points e-mail and SMS at it); refused in production
    mailbox_port: int = 8005
    # How many relays, consumer processes per service and workflow workers `kezek run` starts
    run_relays: int = 1
    run_consumers_per_service: int = 1
    run_workers: int = 1
    # Consumer processes of the services named, as SERVICE=N pairs, comma-separated (e.g.
    # notifications=2: its consumer group's partitions spread over two, and its jobs, when
    # apart, over two more); the others get run_consumers_per_service
    run_consumer_replicas: str = ""
    # Services whose background jobs `kezek run` starts in a process of their own (jobs-SERVICE),
    # apart from their Kafka consumers (consume-SERVICE); comma-separated, empty: none
    run_jobs_apart: str = ""
    # How far `kezek run` lowers the CPU priority of the processes named (Unix niceness, 0-19), as
    # NAME=N pairs, comma-separated; NAME is a process of `kezek run` (consume-gateway, relay,
    # worker, temporal, ...) and names its replicas too (consume-gateway-1, -2). Empty: none
    run_nice: str = ""
    # The port of the local PostgreSQL that `kezek run --postgres` starts
    postgres_port: int = 55432
    # Server settings of that PostgreSQL, as NAME=VALUE pairs, comma-separated (e.g.
    # shared_preload_libraries=pg_stat_statements,work_mem=16MB); empty: its defaults
    run_postgres_settings: str = ""
    log_level: str = "INFO"
    # Prometheus metrics of a process without an HTTP API (relay, consumers,
    # worker): served on host:metrics_port at /metrics; 0: none. The HTTP
    # services serve theirs on their own port (/metrics)
    metrics_port: int = 0
    # The Temporal SDK's own metrics of a worker (task slots, poll and
    # schedule-to-start latencies), Prometheus on host:temporal_metrics_port; 0: none
    temporal_metrics_port: int = 0
    # OpenTelemetry traces, sent by OTLP over HTTP to this collector (e.g.
    # http://otel-collector:4318); empty: no traces are exported
    otlp_endpoint: str = ""
    # Headers for the collector, "key=value,key=value" (an API key)
    otlp_headers: SecretStr = SecretStr("")
    # The share of traces kept, 0.0-1.0, decided at the first service (parent-based after that)
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # JSON logs (structlog); false: human-readable console lines
    log_json: bool = True
    # Service identity (kezek/trust.py): a folder with <service>.pem (the
    # private key of each service this process runs as) and jwks.json (every
    # service's public keys); `kezek keys generate DIR` writes one. Empty:
    # keys derived from the secret key (development and tests only).
    service_keys_dir: str = ""
    # The largest request body a service parses (413 beyond it).
    max_body_bytes: int = 1024 * 1024
    # How long each service keeps a closed application's personal data, in days per outcome, as a
    # JSON object (kezek/retention.py), e.g. {"removed": 730}; outcomes not named keep their defaults:
    # refused 365, removed 1095, aged_out 1095, left 1095, enrolled 1826
    retention_days: str = ""

    @field_validator("run_jobs_apart")
    @classmethod
    def _run_jobs_apart(cls, raw: str) -> str:
        unknown = [name for name in split_names(raw) if name not in SERVICES]
        if unknown:
            raise ValueError(f"names no service: {', '.join(unknown)} (services: {', '.join(SERVICES)})")
        return raw

    @property
    def jobs_apart(self) -> tuple[str, ...]:
        return split_names(self.run_jobs_apart)

    @field_validator("run_consumer_replicas")
    @classmethod
    def _run_consumer_replicas(cls, raw: str) -> str:
        replicas_of(raw)    # a bad value is refused at start-up, naming the field
        return raw

    @field_validator("run_nice")
    @classmethod
    def _run_nice(cls, raw: str) -> str:
        niceness_of(raw)    # a bad value is refused at start-up, naming the field
        return raw

    @field_validator("run_postgres_settings")
    @classmethod
    def _run_postgres_settings(cls, raw: str) -> str:
        postgres_settings_of(raw)    # a bad value is refused at start-up, naming the field
        return raw

    def consumers_of(self, service: str) -> int:
        """How many consumer processes `kezek run` starts for `service`."""
        return replicas_of(self.run_consumer_replicas).get(service, self.run_consumers_per_service)

    @field_validator("retention_days")
    @classmethod
    def _retention_days(cls, raw: str) -> str:
        from kezek.retention import RetentionPolicy
        RetentionPolicy.from_setting(raw)   # a bad value is refused at start-up, naming the field
        return raw

    @classmethod
    def of(cls, settings: Settings | None):
        """`settings` as this class (a service's settings extend the shared
        ones); from the environment when None."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        return cls(**settings.model_dump())

    def retention(self):
        from kezek.retention import RetentionPolicy
        return RetentionPolicy.from_setting(self.retention_days)
    # Keys that seal personal data at rest (kezek/sealing.py): `kid:key`
    # entries (32 random bytes, base64url; `kezek keys data-key KID` prints
    # one), separated by spaces or commas; the first seals, every one opens.
    # Rotate: put a new key first, run `kezek rekey`, then drop the old one.
    # Empty: a development key (refused in production). Never in a backup.
    data_keys: SecretStr = SecretStr("")
    # One service's own keys instead of KEZEK_DATA_KEYS (each process then holds only its own)
    registration_data_keys: SecretStr = SecretStr("")
    queue_data_keys: SecretStr = SecretStr("")
    verification_data_keys: SecretStr = SecretStr("")
    notifications_data_keys: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        if self.env == "production":
            problems = production_problems(self)
            if problems:
                raise ValueError("unsafe for production: " + "; ".join(problems))
        return self

    def database_url_for(self, service: str) -> str:
        if not self.database_url:
            return f"sqlite:///{(self.state_dir / f'{service}.db').resolve()}"
        templated = "{service}" in self.database_url
        url = make_url(self.database_url.replace("{service}", service))
        if not templated:
            name = f"kezek_{service}"
            if url.get_backend_name() == "sqlite":
                name = str(Path(url.database or ".").with_name(f"{name}.db"))
            url = url.set(database=name)
        password = getattr(self, f"{service}_database_password", SecretStr("")).get_secret_value()
        if password and not url.password:
            url = url.set(password=password)
        return url.render_as_string(hide_password=False)

    def keyring_for(self, service: str) -> "Keyring":
        """The keys that seal `service`'s personal data (its own setting, else the shared one)."""
        from kezek.sealing import Keyring

        from kezek.sealing import KeyringError

        text = (getattr(self, f"{service}_data_keys", None) or SecretStr("")).get_secret_value()
        text = text or self.data_keys.get_secret_value()
        if text.strip():
            return Keyring.parse(text)
        if self.env == "production":
            raise KeyringError(f"KEZEK_{service.upper()}_DATA_KEYS or KEZEK_DATA_KEYS must be set in production "
                               "(personal data is sealed with it; kezek keys data-key KID)")
        return Keyring.development()

    def sealing_keyring(self, service: str) -> "Keyring | None":
        """The key ring of a service that seals personal data
        (SEALING_SERVICES); None for one that holds none and needs no keys."""
        return self.keyring_for(service) if service in SEALING_SERVICES else None

    def port_of(self, service: str) -> int:
        return getattr(self, f"{service}_port")

    def url_of(self, service: str) -> str:
        return (getattr(self, f"{service}_url", "") or f"http://{self.host}:{self.port_of(service)}").rstrip("/")

    def portal_url(self) -> str:
        """The portal's address as parents see it."""
        return (self.public_url or self.url_of("gateway")).rstrip("/")

    def topic(self, aggregate: str) -> str:
        return f"{self.kafka_topic_prefix}.{aggregate}"

    def kafka_client_options(self) -> dict[str, Any]:
        """What every kafka-python producer, consumer and admin client gets
        besides its bootstrap servers."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.kafka_sasl_mechanism,
                           sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=self.kafka_sasl_password.get_secret_value())
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            options.update({k: v for k, v in (("ssl_cafile", self.kafka_ssl_cafile),
                                               ("ssl_certfile", self.kafka_ssl_certfile),
                                               ("ssl_keyfile", self.kafka_ssl_keyfile)) if v})
        return options

    def temporal_connect_options(self) -> dict[str, Any]:
        """What every temporalio `Client.connect` gets besides the address,
        the namespace and the data converter."""
        from temporalio.service import TLSConfig

        options: dict[str, Any] = {}
        api_key = self.temporal_api_key.get_secret_value()
        files = (self.temporal_tls_ca_file, self.temporal_tls_cert_file, self.temporal_tls_key_file)
        if any(files) or self.temporal_tls_server_name:
            read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
            options["tls"] = TLSConfig(server_root_ca_cert=read(files[0]), client_cert=read(files[1]),
                                       client_private_key=read(files[2]),
                                       domain=self.temporal_tls_server_name or None)
        elif self.temporal_tls or api_key:
            options["tls"] = True
        if api_key:
            options["api_key"] = api_key
        return options


def production_problems(s: BaseSettings) -> list[str]:
    """Why these settings must not run in production (empty: they may).
    Works on any settings class; fields a class lacks are not checked."""
    problems = []
    secrets = {}
    for name in ("secret_key", "pseudonym_key"):
        value = getattr(s, name).get_secret_value()
        secrets[name] = value
        if value == DEV_SECRET or not value:
            problems.append(f"KEZEK_{name.upper()} must be set (it is the development default)")
        elif len(value) < MIN_SECRET_LENGTH:
            problems.append(f"KEZEK_{name.upper()} must have at least {MIN_SECRET_LENGTH} characters")
    if secrets["secret_key"] and secrets["secret_key"] == secrets["pseudonym_key"]:
        problems.append("KEZEK_SECRET_KEY and KEZEK_PSEUDONYM_KEY must differ")
    url = getattr(s, "database_url", "")
    if not url or url.startswith("sqlite"):
        problems.append("KEZEK_DATABASE_URL must name PostgreSQL (SQLite is for development)")
    else:
        passwords = [make_url(url.replace("{service}", "x")).password or ""]
        passwords += [getattr(s, f"{svc}_database_password").get_secret_value() for svc in SERVICES]
        if any(p.lower() in WELL_KNOWN_PASSWORDS for p in passwords if p):
            problems.append("a database password is a well-known default")
    for name, value in s:
        if name.endswith("cookie_secure") and value is False:
            problems.append(f"KEZEK_{name.upper()} must not be false (cookies over plain HTTP)")
    if not s.public_url.startswith("https://"):
        problems.append("KEZEK_PUBLIC_URL must be the portal's https:// address (links in e-mails carry tokens)")
    if getattr(s, "kafka_security_protocol", "").startswith("SASL_") and not s.kafka_sasl_password.get_secret_value():
        problems.append("KEZEK_KAFKA_SASL_PASSWORD must be set with a SASL protocol")
    if "data_keys" in type(s).model_fields:
        problems += _data_key_problems(s)
    if "service_keys_dir" in type(s).model_fields and not s.service_keys_dir:
        # Keys derived from one shared secret would let any service sign as any other.
        problems.append("KEZEK_SERVICE_KEYS_DIR must be set (kezek keys generate DIR)")
    return problems


def _data_key_problems(s: BaseSettings) -> list[str]:
    """Keys that are set must be well formed. Which process needs which keys
    is known only when it builds a service's engine (`keyring_for` refuses
    the development key in production there, at start-up)."""
    from kezek.sealing import Keyring, KeyringError

    problems = []
    for name in ("data_keys", *(f"{svc}_data_keys" for svc in SEALING_SERVICES)):
        text = getattr(s, name).get_secret_value()
        if text.strip():
            try:
                Keyring.parse(text)
            except KeyringError as exc:
                problems.append(f"KEZEK_{name.upper()}: {exc}")
    return problems
