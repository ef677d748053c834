"""Configuration, validated at start-up and passed down (never read at import).

Every field can be set as an environment variable `KEZEK_<NAME>` or in `.env`;
`.env.example` documents them all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("registration", "queue", "verification", "notifications", "gateway")
DEV_SECRET = "dev-only-insecure-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEZEK_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    country: Literal["KG", "KZ"] = "KG"
    state_dir: Path = Path("var")
    # Empty: one SQLite file per service under state_dir. A PostgreSQL URL
    # (postgresql+psycopg://user@host/kezek): one database per service,
    # named kezek_<service>.
    database_url: str = ""
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = "kezek"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "referrals"
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    pseudonym_key: SecretStr = SecretStr(DEV_SECRET)
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    registration_port: int = 8001
    queue_port: int = 8002
    verification_port: int = 8003
    notifications_port: int = 8004
    temporal_ui_port: int = 8233
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    sms_gateway_url: str = ""
    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _refuse_default_secrets_outside_development(self) -> "Settings":
        if self.env == "production":
            for name in ("secret_key", "pseudonym_key"):
                if getattr(self, name).get_secret_value() == DEV_SECRET:
                    raise ValueError(f"KEZEK_{name.upper()} must be set in production")
        return self

    def database_url_for(self, service: str) -> str:
        if not self.database_url:
            return f"sqlite:///{(self.state_dir / f'{service}.db').resolve()}"
        base, _, _ = self.database_url.rpartition("/")
        return f"{base}/kezek_{service}"

    def port_of(self, service: str) -> int:
        return getattr(self, f"{service}_port")

    def url_of(self, service: str) -> str:
        return f"http://{self.host}:{self.port_of(service)}"

    def topic(self, aggregate: str) -> str:
        return f"{self.kafka_topic_prefix}.{aggregate}"
