"""The provider schema as served to Terraform: the shape of `terraform providers schema -json`,
cut down to what `terraform validate` reads (names, types, required/optional/computed, nested
blocks with their nesting mode and item limits)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A cty type in Terraform's JSON form: "string", ["list", "string"], ["object", {"a": "bool"}].
CtyType = Any

PRIMITIVES = frozenset({"string", "number", "bool", "dynamic"})


def check_cty_type(value: Any) -> None:
    """Raise ValueError unless `value` is a cty type in Terraform's JSON encoding."""
    if isinstance(value, str):
        if value not in PRIMITIVES:
            raise ValueError(f"unknown primitive type {value!r}")
        return
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"not a type: {value!r}")
    kind, inner = value
    if kind in ("list", "set", "map"):
        check_cty_type(inner)
    elif kind == "object" and isinstance(inner, dict):
        for element in inner.values():
            check_cty_type(element)
    elif kind == "tuple" and isinstance(inner, list):
        for element in inner:
            check_cty_type(element)
    else:
        raise ValueError(f"not a type: {value!r}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attribute(_Model):
    type: CtyType
    required: bool = False
    optional: bool = False
    computed: bool = False

    @field_validator("type")
    @classmethod
    def _is_cty_type(cls, value: Any) -> Any:
        check_cty_type(value)
        return value

    @model_validator(mode="after")
    def _settable_or_computed(self) -> Attribute:
        if self.required and (self.optional or self.computed):
            raise ValueError("a required attribute is neither optional nor computed")
        if not (self.required or self.optional or self.computed):
            raise ValueError("an attribute is required, optional or computed")
        return self


class NestedBlock(_Model):
    nesting_mode: Literal["single", "list", "set"]
    block: Block
    min_items: int = Field(default=0, ge=0)
    max_items: int = Field(default=0, ge=0)


class Block(_Model):
    attributes: dict[str, Attribute] = {}
    block_types: dict[str, NestedBlock] = {}


class ProviderSchema(_Model):
    provider_source: str
    provider_version: str
    derived_from: str
    provider: Block
    resource_schemas: dict[str, Block]
    data_source_schemas: dict[str, Block]
    # Types whose schema the source does not carry in full, with the reason: not served.
    not_served: dict[str, str] = {}

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


def load(path: Path) -> ProviderSchema:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return ProviderSchema.model_validate_json(handle.read())


def save(schema: ProviderSchema, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and a fixed name: the same schema always makes the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as handle:
        handle.write(schema.to_json().encode())
