################################################################################
# Scheduled drift repair (drift_repair.enabled): EventBridge Scheduler runs the migration task
# definition on the cluster, one schedule per shard, with the same subnets, security group and
# public IP setting as `make migrate`. Each run compares both buckets, repairs what differs and
# writes its result as EMF metrics (monitoring.tf). The role it runs with is in iam.tf.
################################################################################

locals {
  drift_repair_enabled = var.drift_repair.enabled
  drift_repair_shards  = local.drift_repair_enabled ? var.drift_repair.shards : 0

  # The container of the migration task definition (ecs.tf) whose command a run overrides.
  migrate_container = "migrate"

  drift_repair_command = concat(
    ["python", "-m", "migrate", "--progress", "log"],
    var.drift_repair.delete ? ["--delete", "--max-delete", tostring(var.drift_repair.max_delete)] : [],
  )
  # Every shard gets the same split points (`make plan-shards`), so the ranges tile the key space
  # whenever each task starts. JSON is the encoding `--splits` reads: keys may hold any character.
  drift_repair_commands = [
    for shard in range(local.drift_repair_shards) : concat(
      local.drift_repair_command,
      var.drift_repair.shards > 1 ? [
        "--shard", "${shard}/${var.drift_repair.shards}", "--splits", jsonencode(var.drift_repair.splits),
      ] : [],
      ["--metrics"],
    )
  ]
  # For the templated ECS target the input is RunTask's `overrides` (a TaskOverride).
  drift_repair_inputs = [
    for command in local.drift_repair_commands : jsonencode({
      containerOverrides = [{ name = local.migrate_container, command = command }]
    })
  ]
  # ECS refuses overrides over 8,192 characters. Counted in code points, each non-ASCII one as
  # the \u escape (two for those past U+FFFF) a JSON encoder may send instead: refused here rather
  # than by every scheduled RunTask.
  drift_repair_input_lengths = [
    for input in local.drift_repair_inputs : (
      length(regexall("(?s).", input))
      + 5 * length(regexall("[^\\x00-\\x7f]", input))
      + 6 * length(regexall("[\\x{10000}-\\x{10ffff}]", input))
    )
  ]

  # A rate() schedule's interval in seconds; null for cron() and at().
  drift_repair_rate = regexall("^rate\\(([0-9]+) (minute|hour|day)s?\\)$", var.drift_repair.schedule)
  drift_repair_interval_seconds = one([
    for rate in local.drift_repair_rate : tonumber(rate[0]) * { minute = 60, hour = 3600, day = 86400 }[rate[1]]
  ])
  drift_repair_one_time = startswith(var.drift_repair.schedule, "at(")
}

resource "aws_scheduler_schedule_group" "drift_repair" {
  count = local.drift_repair_enabled ? 1 : 0
  name  = "${var.name}-drift-repair"
  tags  = local.tags
}

# Invocations the Scheduler could not make (RunTask refused: capacity, permissions, a task
# definition gone) after its retries. A queue of its own, not the enqueue-failures queue: that
# one holds S3 events and its alarm says so; a failed run is a missing check, whose cure is
# the next run (or `make migrate`), and its message carries the RunTask error.
resource "aws_sqs_queue" "drift_repair_failures" {
  count                     = local.drift_repair_enabled ? 1 : 0
  name                      = "${var.name}-drift-repair-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true

  tags = local.tags
}

resource "aws_scheduler_schedule" "drift_repair" {
  # checkov:skip=CKV_AWS_297:The schedule holds only the migrate command line and resource ARNs, no secret; AWS-owned encryption is enough
  count       = local.drift_repair_shards
  name        = "${var.name}-drift-repair-${count.index}"
  group_name  = aws_scheduler_schedule_group.drift_repair[0].name
  description = "Check and repair ${var.bucket} -> ${local.target_summary}, shard ${count.index} of ${var.drift_repair.shards}"
  state       = "ENABLED"

  schedule_expression          = var.drift_repair.schedule
  schedule_expression_timezone = var.drift_repair.timezone

  # A run should start when it is due: shards start together, and the overdue alarm counts on it.
  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.this.arn
    role_arn = aws_iam_role.scheduler[0].arn

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.migrate.arn
      launch_type         = "FARGATE"
      platform_version    = "LATEST"
      task_count          = 1
      group               = "drift-repair"

      network_configuration {
        subnets          = var.subnet_ids
        security_groups  = [aws_security_group.tasks.id]
        assign_public_ip = var.assign_public_ip
      }
    }

    input = local.drift_repair_inputs[count.index]

    # RunTask fails now and then (Fargate capacity, throttling): retry within the hour, then
    # record the failure.
    retry_policy {
      maximum_retry_attempts       = 10
      maximum_event_age_in_seconds = 3600
    }

    dead_letter_config {
      arn = aws_sqs_queue.drift_repair_failures[0].arn
    }
  }

  lifecycle {
    precondition {
      condition     = local.drift_repair_input_lengths[count.index] <= 8192
      error_message = "drift_repair: shard ${count.index}'s command is ${local.drift_repair_input_lengths[count.index]} characters as ECS counts a task's overrides (at most 8192; non-ASCII characters count as \\u escapes): the split points are too long for ${var.drift_repair.shards} shards; use fewer (make plan-shards SHARDS=<fewer>)."
    }
  }

  depends_on = [aws_iam_role_policy.scheduler]
}
