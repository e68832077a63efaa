data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

data "aws_s3_bucket" "source" {
  bucket = var.bucket
}

locals {
  name         = var.name
  queue_name   = "${var.name}.fifo"
  account_id   = data.aws_caller_identity.current.account_id
  region       = data.aws_region.current.name
  image        = "${aws_ecr_repository.this.repository_url}@${data.aws_ecr_image.worker.image_digest}"
  stop_timeout = var.shutdown_deadline_seconds + 5

  # arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME (null with `targets`, where `secret` is unset)
  secret_region = var.secret == null ? null : split(":", var.secret)[3]

  # `targets` set: the named targets replace the single target of secret/endpoint/target_bucket.
  multi_target = length(var.targets) > 0

  # Where the bucket goes, in words: the target bucket, or the targets' names.
  target_summary = local.multi_target ? join(", ", sort(keys(var.targets))) : coalesce(var.target_bucket, "(target_bucket unset)")

  # Exactly the targets' secrets, which the tasks read themselves (the task role, iam.tf).
  target_secret_arns = sort(distinct([for t in values(var.targets) : t.secret_arn]))

  # Customer-managed keys of those secrets by the secrets' region: Secrets Manager decrypts a
  # secret with its key in the secret's own region, so each region gets its own kms:ViaService.
  target_secret_keys_by_region = {
    for region in distinct([for t in values(var.targets) : split(":", t.secret_arn)[3] if t.secret_kms_key_arn != null]) :
    region => sort(distinct([for t in values(var.targets) : t.secret_kms_key_arn if t.secret_kms_key_arn != null && split(":", t.secret_arn)[3] == region]))
  }

  tags = merge(var.tags, {
    "app"        = "lyve-replicator"
    "managed-by" = "terraform"
  })
}
