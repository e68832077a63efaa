################################################################################
# S3 Inventory of the source bucket (source_inventory.enabled): a daily or weekly list of every
# current object, read by `python -m migrate --source-inventory` instead of listing the bucket.
# The reading permission is in iam.tf; the destination bucket's policy is the owner's (README).
################################################################################

locals {
  inventory_enabled = var.source_inventory.enabled
  # The inventory's name: S3 writes under PREFIX/SOURCE-BUCKET/NAME/ (manifests in dated folders).
  inventory_name = "${var.name}-migrate"
  inventory_root = join("/", compact([var.source_inventory.prefix, var.bucket, local.inventory_name]))
  inventory_destination_bucket = (
    local.inventory_enabled ? split(":::", var.source_inventory.destination_bucket_arn)[1] : ""
  )
}

resource "aws_s3_bucket_inventory" "source" {
  count                    = local.inventory_enabled ? 1 : 0
  bucket                   = data.aws_s3_bucket.source.bucket
  name                     = local.inventory_name
  included_object_versions = "Current"
  enabled                  = true

  # What the migration's merge reads from a listing, plus what tells multipart and encrypted
  # objects apart.
  optional_fields = [
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
    "IsMultipartUploaded",
    "EncryptionStatus",
  ]

  schedule {
    frequency = var.source_inventory.frequency
  }

  destination {
    bucket {
      format     = var.source_inventory.format
      bucket_arn = var.source_inventory.destination_bucket_arn
      account_id = var.source_inventory.destination_account_id
      prefix     = var.source_inventory.prefix == "" ? null : var.source_inventory.prefix

      encryption {
        sse_s3 {}
      }
    }
  }

  lifecycle {
    precondition {
      # In the source bucket the inventory's own files would be listed, and copied, as objects.
      condition     = local.inventory_destination_bucket != var.bucket
      error_message = "source_inventory.destination_bucket_arn must name another bucket than the source bucket."
    }
  }
}
