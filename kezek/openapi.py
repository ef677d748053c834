"""What the OpenAPI documents show besides types: an example of each model
(Swagger UI fills "Try it out" with it; schemathesis sends it first).

    class Kindergarten(BaseModel):
        model_config = example(id="bsk-12", name="Ак-Бата")
"""
from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

__all__ = ["example"]


def example(_extra: dict[str, Any] | None = None, **fields: Any) -> ConfigDict:
    """A model's config with one example (merged into the config it inherits)."""
    return ConfigDict(json_schema_extra={"examples": [{**(_extra or {}), **fields}]})
