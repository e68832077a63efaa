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
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
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
    ]
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
