################################################################################
# Cluster, the worker service, and the migration task definition (same image)
################################################################################

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_cloudwatch_log_group" "worker" {
  # checkov:skip=CKV_AWS_338:Operational logs; retention is the log_retention_days variable (30 days by default) to keep costs predictable
  # checkov:skip=CKV_AWS_158:Log lines hold keys and counters, never credentials; AWS-managed encryption at rest
  name              = "/ecs/${var.name}/worker"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "migrate" {
  # checkov:skip=CKV_AWS_338:Operational logs; retention is the log_retention_days variable (30 days by default) to keep costs predictable
  # checkov:skip=CKV_AWS_158:Log lines hold keys and counters, never credentials; AWS-managed encryption at rest
  name              = "/ecs/${var.name}/migrate"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

locals {
  # Each named target as the tasks read it from TARGETS: its settings, and the ARN of its secret
  # (read by the task itself, never a credential). Unset fields are left out.
  targets_config = {
    for name, t in var.targets : name => {
      for field, value in {
        type             = t.type
        bucket           = t.bucket
        container        = t.container
        endpoint_url     = t.endpoint_url
        region           = t.type == "s3" ? coalesce(t.region, "us-east-1") : null
        addressing_style = t.addressing_style
        account_url      = t.account_url
        secret_id        = t.secret_arn
      } : field => value if value != null
    }
  }

  # The target: TARGETS with `targets`, else the single target's variables, as before.
  target_environment = local.multi_target ? [
    { name = "TARGETS", value = jsonencode(local.targets_config) },
    ] : [
    { name = "TARGET_BUCKET", value = var.target_bucket },
    { name = "TARGET_ENDPOINT_URL", value = var.endpoint },
    { name = "TARGET_REGION", value = var.target_region == null ? "us-east-1" : var.target_region },
  ]

  # Non-secret settings shared by both task definitions (see the README's configuration table).
  common_environment = concat([
    { name = "SOURCE_BUCKET", value = var.bucket },
    ], local.target_environment, [
    { name = "QUEUE_URL", value = aws_sqs_queue.this.url },
    { name = "DLQ_URL", value = aws_sqs_queue.dlq.url },
    { name = "PART_SIZE_MIB", value = tostring(var.part_size_mib) },
    { name = "MAX_BUFFER_MIB", value = tostring(var.max_buffer_mib) },
    { name = "WORKER_CONCURRENCY", value = tostring(var.worker_concurrency) },
    { name = "VISIBILITY_TIMEOUT_SECONDS", value = tostring(var.visibility_timeout_seconds) },
    { name = "SHUTDOWN_DEADLINE_SECONDS", value = tostring(var.shutdown_deadline_seconds) },
    { name = "LOG_FORMAT", value = "json" },
    { name = "AWS_REGION", value = local.region },
  ])

  # The worker's own: its long poll is the queue's receive_wait_time_seconds (sqs.tf).
  worker_environment = [
    { name = "RECEIVE_WAIT_SECONDS", value = tostring(aws_sqs_queue.this.receive_wait_time_seconds) },
  ]

  # Target credentials are injected by ECS from the secret's JSON keys, never as plain values.
  # With `targets` none are: each task reads its targets' secrets (secret_id in TARGETS).
  target_secrets = local.multi_target || var.secret == null ? [] : [
    { name = "TARGET_ACCESS_KEY_ID", valueFrom = "${var.secret}:access_key_id::" },
    { name = "TARGET_SECRET_ACCESS_KEY", valueFrom = "${var.secret}:secret_access_key::" },
  ]
  container_secrets = local.multi_target ? null : local.target_secrets

  # The single-target variables, for the precondition that refuses them alongside `targets`.
  single_target_settings = {
    secret             = var.secret
    endpoint           = var.endpoint
    target_bucket      = var.target_bucket
    target_region      = var.target_region
    secret_kms_key_arn = var.secret_kms_key_arn
  }

  tmp_volume = "tmp"
}

resource "aws_ecs_task_definition" "worker" {
  family                   = "${var.name}-worker"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.worker_cpu
  memory                   = var.worker_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = local.tmp_volume
  }

  container_definitions = jsonencode([{
    name                   = "worker"
    image                  = local.image
    essential              = true
    command                = ["python", "-m", "worker"]
    user                   = "10001"
    readonlyRootFilesystem = true
    stopTimeout            = local.stop_timeout
    environment            = concat(local.common_environment, local.worker_environment)
    secrets                = local.container_secrets
    mountPoints            = [{ sourceVolume = local.tmp_volume, containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "worker"
      }
    }
  }])

  tags = local.tags

  lifecycle {
    # One way of naming the target or the other, never a mix: a single-target value next to
    # `targets` would be silently ignored.
    precondition {
      condition     = !local.multi_target || alltrue([for value in values(local.single_target_settings) : value == null])
      error_message = "With `targets` set, leave the single-target variables unset (each target carries its own secret_arn, endpoint_url, bucket, region and secret_kms_key_arn); set now: ${join(", ", [for name, value in local.single_target_settings : name if value != null])}."
    }
    precondition {
      condition     = local.multi_target || (var.secret != null && var.endpoint != null && var.target_bucket != null)
      error_message = "Without `targets`, secret, endpoint and target_bucket are required; missing: ${join(", ", [for name in ["secret", "endpoint", "target_bucket"] : name if local.single_target_settings[name] == null])}."
    }
  }
}

resource "aws_ecs_task_definition" "migrate" {
  family                   = "${var.name}-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.migrate_cpu
  memory                   = var.migrate_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Listings are sorted on disk (SQLite spill files) under /tmp.
  ephemeral_storage {
    size_in_gib = 50
  }

  volume {
    name = local.tmp_volume
  }

  container_definitions = jsonencode([{
    name                   = "migrate"
    image                  = local.image
    essential              = true
    command                = ["python", "-m", "migrate", "--progress", "log"]
    user                   = "10001"
    readonlyRootFilesystem = true
    stopTimeout            = 120
    environment            = local.common_environment
    secrets                = local.container_secrets
    mountPoints            = [{ sourceVolume = local.tmp_volume, containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.migrate.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "migrate"
      }
    }
  }])

  tags = local.tags
}

resource "aws_ecs_service" "worker" {
  name                               = "${var.name}-worker"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.worker.arn
  launch_type                        = "FARGATE"
  desired_count                      = var.min_tasks
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = var.assign_public_ip
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    # Autoscaling owns the task count after creation.
    ignore_changes = [desired_count]
  }

  tags = local.tags
}
