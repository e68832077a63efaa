"""The versions `terraform validate` runs against: one place, so the check is reproducible."""

from __future__ import annotations

from pathlib import Path

PROVIDER_SOURCE = "registry.terraform.io/hashicorp/aws"
# The newest 5.x release, inside `terraform/versions.tf`'s ">= 5.70.0, < 6.0.0".
PROVIDER_VERSION = "5.100.0"

# The npm package cdktf generated from that provider's schema (its package.json says
# cdktf.provider.version = 5.100.0), and the registry's integrity hash of its tarball.
CDKTF_PACKAGE = "@cdktf/provider-aws"
CDKTF_VERSION = "20.1.0"
CDKTF_INTEGRITY = (
    "sha512-ONRJFu5qz/4nqis5f9OxRk8rOZQnuOiDoRtOu3z53fiFxzow0vvA2afnkfntoZGOsynDerqyWPX4/y8A6k6+8g=="
)

SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / f"aws-{PROVIDER_VERSION}.json.gz"
