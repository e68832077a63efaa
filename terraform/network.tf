# The tasks reach out only: S3, SQS, ECR, Logs, Secrets Manager and the target endpoint, over HTTPS.
resource "aws_security_group" "tasks" {
  # checkov:skip=CKV_AWS_382:The target is an internet endpoint (Lyve Cloud); egress is HTTPS only
  name        = "${var.name}-tasks"
  description = "Replication worker and migration tasks: HTTPS egress only, no ingress"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to AWS APIs and the target endpoint"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = local.tags
}
