"""What the OpenAPI documents show besides types: an example of each model
(Swagger UI fills "Try it out" with it; schemathesis sends it first).

    class Kindergarten(BaseModel):
        model_config = example(id="bsk-12", name="Ак-Бата")
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Answer", "Moment", "example"]


class Answer(BaseModel):
    """An answer of a service's API: it may carry properties added later
    (a reader keeps what it does not know)."""
    model_config = ConfigDict(extra="allow")


def example(_extra: dict[str, Any] | None = None, **fields: Any) -> ConfigDict:
    """A model's config with one example (merged into the config it inherits)."""
    return ConfigDict(json_schema_extra={"examples": [{**(_extra or {}), **fields}]})


# A moment as a service wrote it (ISO 8601 text, kept as it is when an answer
# is passed on), documented as a date-time.
Moment = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
