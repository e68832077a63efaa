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

  # arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME
  secret_region = split(":", var.secret)[3]

  tags = merge(var.tags, {
    "app"        = "lyve-replicator"
    "managed-by" = "terraform"
  })
}
