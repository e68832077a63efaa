"""A schema-only hashicorp/aws provider: Terraform starts it as a plugin and it answers with the
provider's schema (`infra_check/schema/`), so `terraform validate` checks the configuration
against it. It validates and nothing else: it has no credentials, reads nothing and every
operation beyond validation fails with a plain error.

    python -m infra_check.provider   # run by Terraform, speaking the plugin protocol on stdout
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import tf.provider  # type: ignore[import-untyped]
from tf import runner
from tf import schema as tf_schema
from tf import types as tf_types
from tf.gen import tfplugin_pb2 as pb  # type: ignore[import-untyped]
from tf.iface import DataSource, Resource  # type: ignore[import-untyped]
from tf.utils import Diagnostics  # type: ignore[import-untyped]

from infra_check import pins

# Terraform hands the plugin this environment; the runner sets both.
SCHEMA_ENV = "INFRA_CHECK_SCHEMA"
RUN_DIR_ENV = "INFRA_CHECK_RUN_DIR"

_NESTING = {
    "single": pb.Schema.NestedBlock.NestingMode.SINGLE,
    "list": pb.Schema.NestedBlock.NestingMode.LIST,
    "set": pb.Schema.NestedBlock.NestingMode.SET,
}
_VALIDATE_ONLY = (
    "This provider serves the hashicorp/aws schema for `terraform validate` only; "
    "use the real provider for plan, apply, import and data sources."
)

# The schema file's JSON (infra_check.schema.Block and friends, checked when the file is built
# and by the tests): read as plain JSON here, since Terraform starts the plugin more than once
# per validation and every start counts.
JsonBlock = dict[str, Any]


class _CtyType(tf_types.TfType):  # type: ignore[misc]
    """Any cty type, as the JSON bytes Terraform reads (tf's own types cover only a few)."""

    def __init__(self, cty: Any) -> None:
        self._json = json.dumps(cty, separators=(",", ":")).encode()

    def tf_type(self) -> bytes:
        return self._json

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any) -> Any:
        return value


class _NestedBlock(tf_schema.NestedBlock):  # type: ignore[misc]
    """tf's nested blocks know `set` and `single`; the provider's schema also has `list`."""

    def __init__(self, name: str, nested: dict[str, Any]) -> None:
        super().__init__(name, tf_schema.NestMode.Single, _block(nested["block"]))
        self._nested = nested

    def to_pb(self) -> Any:
        return pb.Schema.NestedBlock(
            type_name=self.type_name,
            block=self.block.to_pb(),
            nesting=_NESTING[self._nested["nesting_mode"]],
            min_items=self._nested.get("min_items", 0),
            max_items=self._nested.get("max_items", 0),
        )

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any) -> Any:
        return value

    def semantically_equal(self, a_decoded: Any, b_decoded: Any) -> bool:
        return bool(a_decoded == b_decoded)


def _parts(block: JsonBlock) -> dict[str, Any]:
    attributes = [
        tf_schema.Attribute(
            name,
            _CtyType(attribute["type"]),
            required=attribute.get("required", False),
            optional=attribute.get("optional", False),
            computed=attribute.get("computed", False),
        )
        for name, attribute in block.get("attributes", {}).items()
    ]
    nested = [_NestedBlock(name, b) for name, b in block.get("block_types", {}).items()]
    return {"attributes": attributes, "block_types": nested}


def _block(block: JsonBlock) -> Any:
    return tf_schema.Block(**_parts(block))


def _schema(block: JsonBlock) -> Any:
    return tf_schema.Schema(**_parts(block))


class _Served:
    """What resource and data source classes share: a type name and a schema, built on demand
    (a validation asks for the few types the configuration uses)."""

    type_name: ClassVar[str]
    block: ClassVar[JsonBlock]
    built: ClassVar[Any] = None

    def __init__(self, provider: SchemaOnlyProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.type_name.removeprefix("aws_")

    @classmethod
    def get_schema(cls) -> Any:
        if cls.built is None:
            cls.built = _schema(cls.block)
        return cls.built

    @staticmethod
    def _refuse(ctx: Any) -> None:
        ctx.diagnostics.add_error("validate only", _VALIDATE_ONLY)


class _Resource(_Served, Resource):  # type: ignore[misc]
    def create(self, ctx: Any, planned: Any) -> None:
        self._refuse(ctx)

    def read(self, ctx: Any, current: Any) -> Any:
        self._refuse(ctx)

    def update(self, ctx: Any, current: Any, planned: Any) -> None:
        self._refuse(ctx)

    def delete(self, ctx: Any, current: Any) -> None:
        self._refuse(ctx)


class _DataSource(_Served, DataSource):  # type: ignore[misc]
    def read(self, ctx: Any, config: Any) -> None:
        self._refuse(ctx)


class SchemaOnlyProvider:
    """tf's Provider interface over the schema file's JSON."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._resources = [
            type(f"Resource_{name}", (_Resource,), {"type_name": name, "block": block})
            for name, block in schema["resource_schemas"].items()
        ]
        self._data_sources = [
            type(f"DataSource_{name}", (_DataSource,), {"type_name": name, "block": block})
            for name, block in schema["data_source_schemas"].items()
        ]

    def get_model_prefix(self) -> str:
        return "aws_"

    def full_name(self) -> str:
        return str(self.schema["provider_source"])

    def get_provider_schema(self, diags: Diagnostics) -> Any:
        return _schema(self.schema["provider"])

    def validate_config(self, diags: Diagnostics, config: Any) -> None:
        """Terraform has already checked the provider block against the schema."""

    def configure_provider(self, diags: Diagnostics, config: Any) -> None:
        diags.add_error("validate only", _VALIDATE_ONLY)

    def get_resources(self) -> list[type[_Resource]]:
        return self._resources

    def get_data_sources(self) -> list[type[_DataSource]]:
        return self._data_sources

    def get_functions(self) -> list[Any]:
        return []

    def new_resource(self, klass: type[_Resource]) -> _Resource:
        return klass(self)

    def new_data_source(self, klass: type[_DataSource]) -> _DataSource:
        return klass(self)


def _servicer(response_cache: Path | None) -> type:
    class Servicer(tf.provider.ProviderServicer):  # type: ignore[misc]
        """tf's servicer, keeping the whole-schema answer (about 1 MB, all types) for the next
        start in the same run: Terraform asks each plugin instance for it."""

        def GetProviderSchema(self, request: Any, context: Any) -> Any:  # gRPC's name
            if response_cache is not None and response_cache.is_file():
                return pb.GetProviderSchema.Response.FromString(response_cache.read_bytes())
            response = super().GetProviderSchema(request, context)
            if response_cache is not None:
                partial = response_cache.with_suffix(f".{os.getpid()}")
                partial.write_bytes(response.SerializeToString())
                partial.replace(response_cache)
            return response

    return Servicer


def main() -> None:
    with gzip.open(os.environ.get(SCHEMA_ENV, str(pins.SCHEMA_FILE)), "rt", encoding="utf-8") as handle:
        schema = json.load(handle)
    run_dir = os.environ.get(RUN_DIR_ENV)
    if run_dir:
        # tf caches its TLS key pair under ~/.cache: keep it, and the schema answer, in the
        # run's own temporary directory.
        runner._get_cert_cache_path = lambda: Path(run_dir) / "ssl_cert.json"
    # run_provider builds tf.provider.ProviderServicer when it starts: this one instead.
    tf.provider.ProviderServicer = _servicer(Path(run_dir) / "schema-response.pb" if run_dir else None)
    runner.run_provider(SchemaOnlyProvider(schema), sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Terraform waits for the plugin to exit; tearing down the interpreter's objects (the whole
    # schema) only adds to that wait.
    os._exit(0)


if __name__ == "__main__":
    main()
