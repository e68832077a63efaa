################################################################################
# Dashboard and alarms: queue depth and age, DLQ, tasks, and the worker's own
# replication metrics (CloudWatch Embedded Metric Format in its log lines).
################################################################################

locals {
  metrics_namespace = "LyveReplicator"
  alarm_actions     = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
  queue_dimension   = ["QueueName", aws_sqs_queue.this.name]
  dlq_dimension     = ["QueueName", aws_sqs_queue.dlq.name]
  emf_dimension     = ["Queue", aws_sqs_queue.this.name]

  # Drift repair: a run's EMF document (migrate/run_metrics.py) carries the same dimension. A
  # period as long as the schedule's interval (at most the day CloudWatch allows per period)
  # holds one run of every shard.
  drift_repair_period = min(86400, coalesce(local.drift_repair_interval_seconds, 86400))

  # The overdue alarm counts reports: every task writes one `Seconds` value per run, so a window
  # of the schedule's interval holds `shards` of them, and one fewer when a shard stops. Windows
  # roll (CloudWatch evaluates every minute), so a run that ends later than the one before
  # leaves its shard out of an exact interval for that difference: the window is the interval
  # plus a quarter. A period stops at a day: a daily schedule (cron() counts as one) gets no
  # margin, so by default three such windows must all fall short. Past a day, per-day counts
  # say nothing about shards: that alarm only counts hours without any report.
  drift_repair_counts_shards = coalesce(local.drift_repair_interval_seconds, 0) <= 86400
  drift_repair_window = (
    local.drift_repair_interval_seconds == null ? 86400
    : min(86400, local.drift_repair_interval_seconds + floor(local.drift_repair_interval_seconds / 240) * 60)
  )
  drift_repair_overdue_hours = (
    local.drift_repair_one_time ? null
    : var.drift_repair.overdue_after_hours != null ? var.drift_repair.overdue_after_hours
    : local.drift_repair_window == coalesce(local.drift_repair_interval_seconds, 86400) ? 72
    : min(168, max(2, ceil(2 * local.drift_repair_interval_seconds / 3600)))
  )
  drift_repair_overdue_period    = local.drift_repair_counts_shards ? local.drift_repair_window : 3600
  drift_repair_overdue_threshold = local.drift_repair_counts_shards ? var.drift_repair.shards : 1
  # Whole windows within overdue_after_hours, at least one.
  drift_repair_overdue_windows = (
    local.drift_repair_overdue_hours == null ? null
    : max(1, floor(local.drift_repair_overdue_hours * 3600 / local.drift_repair_overdue_period))
  )
  drift_repair_widgets = slice([
    {
      type = "metric", x = 0, y = 24, width = 12, height = 6
      properties = {
        title  = "Drift repair: differences found, repaired, failed, remaining (per run, all shards)"
        region = local.region
        stat   = "Sum"
        period = local.drift_repair_period
        metrics = [
          concat([local.metrics_namespace, "DriftFound"], local.emf_dimension),
          concat([local.metrics_namespace, "DriftRepaired"], local.emf_dimension),
          concat([local.metrics_namespace, "DriftFailed"], local.emf_dimension),
          concat([local.metrics_namespace, "DriftRemaining"], local.emf_dimension),
        ]
      }
    },
    {
      type = "metric", x = 12, y = 24, width = 12, height = 6
      properties = {
        title  = "Drift repair: objects compared, longest task (s), failed schedule invocations"
        region = local.region
        period = local.drift_repair_period
        metrics = [
          concat([local.metrics_namespace, "ObjectsCompared"], local.emf_dimension, [{ stat = "Sum" }]),
          concat([local.metrics_namespace, "Seconds"], local.emf_dimension, [{ stat = "Maximum", yAxis = "right" }]),
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", one(aws_sqs_queue.drift_repair_failures[*].name), { stat = "Maximum" }],
        ]
      }
    },
  ], 0, local.drift_repair_enabled ? 2 : 0)

  # `targets`: the worker publishes its replication metrics once more per target, with the
  # dimensions {Queue, Target}.
  target_names = sort(keys(var.targets))
  target_widgets = slice([
    {
      type = "metric", x = 0, y = 30, width = 12, height = 6
      properties = {
        title   = "By target: objects replicated and failures"
        region  = local.region
        stat    = "Sum"
        period  = 60
        metrics = [for pair in setproduct(local.target_names, ["ObjectsReplicated", "Failures"]) : concat([local.metrics_namespace, pair[1]], local.emf_dimension, ["Target", pair[0]])]
      }
    },
    {
      type = "metric", x = 12, y = 30, width = 12, height = 6
      properties = {
        title   = "By target: replication latency p99, event to target (s)"
        region  = local.region
        period  = 60
        metrics = [for name in local.target_names : concat([local.metrics_namespace, "ReplicationLatency"], local.emf_dimension, ["Target", name], [{ stat = "p99" }])]
      }
    },
  ], 0, local.multi_target ? 2 : 0)
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = concat([
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Queue: visible and in-flight messages"
          region = local.region
          stat   = "Maximum"
          period = 60
          metrics = [
            concat(["AWS/SQS", "ApproximateNumberOfMessagesVisible"], local.queue_dimension),
            concat(["AWS/SQS", "ApproximateNumberOfMessagesNotVisible"], local.queue_dimension),
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Age of the oldest message (s)"
          region  = local.region
          stat    = "Maximum"
          period  = 60
          metrics = [concat(["AWS/SQS", "ApproximateAgeOfOldestMessage"], local.queue_dimension)]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title   = "Dead-letter queue depth"
          region  = local.region
          stat    = "Maximum"
          period  = 60
          metrics = [concat(["AWS/SQS", "ApproximateNumberOfMessagesVisible"], local.dlq_dimension)]
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title  = "Worker tasks"
          region = local.region
          stat   = "Average"
          period = 60
          metrics = [
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.worker.name],
            ["ECS/ContainerInsights", "DesiredTaskCount", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.worker.name],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title  = "Replication latency, event to target (s)"
          region = local.region
          period = 60
          metrics = [
            concat([local.metrics_namespace, "ReplicationLatency"], local.emf_dimension, [{ stat = "p50" }]),
            concat([local.metrics_namespace, "ReplicationLatency"], local.emf_dimension, [{ stat = "p99" }]),
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title  = "Objects replicated, deleted, failed"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            concat([local.metrics_namespace, "ObjectsReplicated"], local.emf_dimension),
            concat([local.metrics_namespace, "ObjectsDeleted"], local.emf_dimension),
            concat([local.metrics_namespace, "Failures"], local.emf_dimension),
          ]
        }
      },
      {
        type = "metric", x = 12, y = 12, width = 12, height = 6
        properties = {
          title   = "Bytes replicated"
          region  = local.region
          stat    = "Sum"
          period  = 60
          metrics = [concat([local.metrics_namespace, "BytesReplicated"], local.emf_dimension)]
        }
      },
      {
        type = "metric", x = 0, y = 18, width = 12, height = 6
        properties = {
          title  = "Dead-lettered at once, by reason (unstorable key, archived, encrypted)"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            [{ expression = "SEARCH('{${local.metrics_namespace},Queue,Reason} MetricName=\"PermanentFailures\" Queue=\"${aws_sqs_queue.this.name}\"', 'Sum', 60)", id = "permanent" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 18, width = 12, height = 6
        properties = {
          title  = "Interruptions requeued, leases lost, source bucket missing"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            concat([local.metrics_namespace, "Interruptions"], local.emf_dimension),
            concat([local.metrics_namespace, "LeasesLost"], local.emf_dimension),
            concat([local.metrics_namespace, "SourceBucketMissing"], local.emf_dimension),
          ]
        }
      },
    ], local.drift_repair_widgets, local.target_widgets)
  })
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name}-dlq-not-empty"
  alarm_description   = "Messages failed maxReceiveCount times; see the worker logs, fix, then make redrive"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  alarm_name          = "${var.name}-replication-behind"
  alarm_description   = "The oldest queued event waits longer than ${var.oldest_message_alarm_seconds}s: replication is falling behind"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.this.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# Events the Lambda rejected (not valid S3 events) or could not enqueue after its retries, and
# events EventBridge could not deliver: each concerns keys that may now differ on the target.
resource "aws_cloudwatch_metric_alarm" "enqueue_failures" {
  alarm_name          = "${var.name}-enqueue-failures"
  alarm_description   = "S3 events were not enqueued (see the enqueue-failures queue for each event and its error); make migrate reconciles what they concerned"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.lambda_failures.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# The enqueue Lambda. Throttles: invocations refused at its reserved concurrency; Lambda keeps
# the events and retries them, so a short burst only delays them, and throttles in each of 5
# minutes mean the enqueue falls behind (raise lambda_reserved_concurrency). Errors: failed
# invocations, retried twice, then the event goes to the enqueue-failures queue (alarm above).
resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  alarm_name          = "${var.name}-enqueue-throttled"
  alarm_description   = "The enqueue Lambda was throttled at its reserved concurrency (${var.lambda_reserved_concurrency}) in each of the last 5 minutes: events wait in Lambda's queue and reach the replication queue late; raise lambda_reserved_concurrency"
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.enqueue.function_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  alarm_name          = "${var.name}-enqueue-errors"
  alarm_description   = "The enqueue Lambda failed invocations (see its log group); Lambda retries each event twice, then it goes to the enqueue-failures queue"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.enqueue.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "source_bucket_missing" {
  alarm_name          = "${var.name}-source-bucket-missing"
  alarm_description   = "The worker finds no source bucket (deleted, or SOURCE_BUCKET / region wrong): nothing is replicated or deleted until it is fixed"
  namespace           = local.metrics_namespace
  metric_name         = "SourceBucketMissing"
  dimensions          = { Queue = aws_sqs_queue.this.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# `targets`: one alarm per target, so that a target that fails while the others replicate is
# seen (the dead-letter queue alarm says which messages, not which target).
resource "aws_cloudwatch_metric_alarm" "target_failures" {
  for_each            = var.targets
  alarm_name          = "${var.name}-failures-${each.key}"
  alarm_description   = "Replication to target ${each.key} (${each.value.type}) failed in the last 5 minutes (Failures, dimensions Queue and Target); failed messages are retried, then dead-lettered. See the worker log group for target ${each.key}"
  namespace           = local.metrics_namespace
  metric_name         = "Failures"
  dimensions          = { Queue = aws_sqs_queue.this.name, Target = each.key }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

################################################################################
# Drift repair (drift_repair.enabled): what the last run left, runs that stopped reporting, and
# schedule invocations that failed.
################################################################################

# Differences a run found and could not repair, or anything that failed (an incomplete run
# included). Missing data keeps the state: between runs there is nothing new to say, so the
# alarm stays as the last run left it until a clean run reports.
resource "aws_cloudwatch_metric_alarm" "drift_remaining" {
  count               = local.drift_repair_enabled ? 1 : 0
  alarm_name          = "${var.name}-drift-remaining"
  alarm_description   = "The last drift-repair run left differences or failed (see the migrate log group for its failures and summary); the next run retries, make migrate MIGRATE_ARGS=--check lists them"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "ignore"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags

  metric_query {
    id          = "left"
    expression  = "remaining + failed"
    label       = "Differences remaining and failures"
    return_data = true
  }

  metric_query {
    id = "remaining"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "DriftRemaining"
      dimensions  = { Queue = aws_sqs_queue.this.name }
      stat        = "Sum"
      period      = local.drift_repair_period
    }
  }

  metric_query {
    id = "failed"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "DriftFailed"
      dimensions  = { Queue = aws_sqs_queue.this.name }
      stat        = "Sum"
      period      = local.drift_repair_period
    }
  }
}

# Too few reports: a shard's task (or every one) failed before the end of its run, when a run
# writes its metrics; the schedule, RunTask, bad settings or split points, a task killed. Missing
# data is no report at all, so it breaches.
resource "aws_cloudwatch_metric_alarm" "drift_repair_overdue" {
  count      = local.drift_repair_enabled && local.drift_repair_overdue_hours != null ? 1 : 0
  alarm_name = "${var.name}-drift-repair-overdue"
  alarm_description = (
    local.drift_repair_counts_shards
    ? "Fewer than ${var.drift_repair.shards} drift-repair reports (one per shard and run) in each of the last ${coalesce(local.drift_repair_overdue_windows, 0)} windows of ${local.drift_repair_overdue_period / 60} min: a shard did not finish its run. See the drift-repair-failures queue and the migrate log group"
    : "No drift-repair run has reported for ${coalesce(local.drift_repair_overdue_hours, 0)} h: see the drift-repair-failures queue and the migrate log group"
  )
  namespace           = local.metrics_namespace
  metric_name         = "Seconds"
  dimensions          = { Queue = aws_sqs_queue.this.name }
  statistic           = "SampleCount"
  period              = local.drift_repair_overdue_period
  evaluation_periods  = coalesce(local.drift_repair_overdue_windows, 1)
  datapoints_to_alarm = coalesce(local.drift_repair_overdue_windows, 1)
  comparison_operator = "LessThanThreshold"
  threshold           = local.drift_repair_overdue_threshold
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags

  lifecycle {
    # CloudWatch's limit for periods under an hour.
    precondition {
      condition     = local.drift_repair_overdue_period >= 3600 || local.drift_repair_overdue_period * coalesce(local.drift_repair_overdue_windows, 1) <= 86400
      error_message = "drift_repair.overdue_after_hours: with a schedule under 48 minutes the alarm's windows are under an hour, and CloudWatch evaluates those over one day at most; set 24 or less."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "drift_repair_failures" {
  count               = local.drift_repair_enabled ? 1 : 0
  alarm_name          = "${var.name}-drift-repair-failures"
  alarm_description   = "EventBridge Scheduler could not start a drift-repair run (RunTask failed after its retries); each message in the drift-repair-failures queue carries the error"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.drift_repair_failures[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}
