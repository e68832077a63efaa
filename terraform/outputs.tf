output "queue_url" {
  description = "URL of the FIFO replication queue (QUEUE_URL)."
  value       = aws_sqs_queue.this.url
}

output "dlq_url" {
  description = "URL of the FIFO dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "lambda_failures_queue_url" {
  description = "S3 events the enqueue Lambda failed after its retries."
  value       = aws_sqs_queue.lambda_failures.url
}

output "cluster_name" {
  description = "ECS cluster running the worker service and migration tasks."
  value       = aws_ecs_cluster.this.name
}

output "worker_service_name" {
  description = "ECS service of the replication worker."
  value       = aws_ecs_service.worker.name
}

output "migrate_task_definition_arn" {
  description = "Task definition run by `make migrate`."
  value       = aws_ecs_task_definition.migrate.arn
}

output "subnet_ids" {
  description = "Subnets the tasks run in (used by `make migrate`)."
  value       = var.subnet_ids
}

output "security_group_id" {
  description = "Security group of the tasks (used by `make migrate`)."
  value       = aws_security_group.tasks.id
}

output "assign_public_ip" {
  description = "Whether tasks get a public IP (used by `make migrate`)."
  value       = var.assign_public_ip
}

output "ecr_repository_url" {
  description = "Where `make push` pushes the worker image."
  value       = aws_ecr_repository.this.repository_url
}

output "lambda_function_name" {
  description = "The enqueue Lambda."
  value       = aws_lambda_function.enqueue.function_name
}

output "worker_log_group" {
  description = "CloudWatch Logs group of the worker."
  value       = aws_cloudwatch_log_group.worker.name
}

output "migrate_log_group" {
  description = "CloudWatch Logs group of the migration tasks."
  value       = aws_cloudwatch_log_group.migrate.name
}

output "dashboard_url" {
  description = "The CloudWatch dashboard."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.this.dashboard_name}"
}

output "source_bucket" {
  description = "The replicated bucket."
  value       = var.bucket
}

output "target_bucket" {
  description = "The bucket on the target endpoint (null with `targets`: see the targets output)."
  value       = var.target_bucket
}

output "target_endpoint" {
  description = "The target endpoint (null with `targets`: see the targets output)."
  value       = var.endpoint
}

output "targets" {
  description = "The named targets as the worker and migration tasks get them in TARGETS (type, bucket or container, endpoint, region, secret ARN as secret_id); empty without `targets`."
  value       = local.targets_config
}

output "event_delivery" {
  description = "How the bucket's events reach the enqueue Lambda: eventbridge or notification."
  value       = var.event_delivery
}

output "eventbridge_rule_arn" {
  description = "The EventBridge rule that feeds the enqueue Lambda (null with event_delivery = notification)."
  value       = one(aws_cloudwatch_event_rule.this[*].arn)
}

output "drift_repair_schedules" {
  description = "The drift-repair schedules, one per shard (empty when drift_repair is off)."
  value       = aws_scheduler_schedule.drift_repair[*].name
}

output "drift_repair_failures_queue_url" {
  description = "Schedule invocations that could not start a drift-repair run (null when drift_repair is off)."
  value       = one(aws_sqs_queue.drift_repair_failures[*].url)
}

output "source_inventory_manifest" {
  description = "Where S3 Inventory writes the source bucket's manifests: pass one (its YYYY-MM-DDTHH-MMZ folder filled in, usually the newest) to `--source-inventory` (null when source_inventory is off)."
  value       = local.inventory_enabled ? "s3://${local.inventory_destination_bucket}/${local.inventory_root}/YYYY-MM-DDTHH-MMZ/manifest.json" : null
}

output "source_inventory_destination_policy_statement" {
  description = "The statement the inventory destination bucket's policy needs (add it to that bucket's policy: S3 writes the inventory as s3.amazonaws.com); null when source_inventory is off."
  value = local.inventory_enabled ? jsonencode({
    Sid       = "S3InventoryWrites"
    Effect    = "Allow"
    Principal = { Service = "s3.amazonaws.com" }
    Action    = "s3:PutObject"
    Resource  = "${var.source_inventory.destination_bucket_arn}/${local.inventory_root}/*"
    Condition = {
      ArnLike      = { "aws:SourceArn" = data.aws_s3_bucket.source.arn }
      StringEquals = { "aws:SourceAccount" = local.account_id, "s3:x-amz-acl" = "bucket-owner-full-control" }
    }
  }) : null
}
