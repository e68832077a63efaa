################################################################################
# Scale on backlog per task: visible messages / running tasks, target tracking.
# Target tracking has no data at zero tasks, so when min_tasks = 0 two step
# policies take the service from 0 to 1 (only while no task runs) and back to 0.
################################################################################

locals {
  scale_to_zero = var.min_tasks == 0
  service_id    = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}"
}

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  resource_id        = local.service_id
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "backlog" {
  name               = "${var.name}-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.backlog_per_task
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "Visible messages"
        return_data = false
        # Maximum, not Sum: the queue length is a gauge, and a Sum grows with the number of
        # samples that land in a period (one a minute from SQS today). Maximum is the value the
        # queue alarms and the dashboard read, and errs towards one task too many, not too few.
        metric_stat {
          stat = "Maximum"
          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"
            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.this.name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Running worker tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.worker.name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "Visible messages per running task"
        expression  = "visible / tasks"
        return_data = true
      }
    }
  }
}

# From zero to one task. CloudWatch repeats an alarm's Auto Scaling action every minute it stays
# in ALARM, and target tracking does not block a step policy, so this policy must never lower the
# count: it adds one task (ChangeInCapacity), never sets one (ExactCapacity), and its cooldown
# makes a repeat within 5 minutes add nothing (the task it added counts as already there).
resource "aws_appautoscaling_policy" "from_zero" {
  count              = local.scale_to_zero ? 1 : 0
  name               = "${var.name}-scale-from-zero"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    metric_aggregation_type = "Maximum"
    cooldown                = 300

    step_adjustment {
      metric_interval_lower_bound = 0
      scaling_adjustment          = 1
    }
  }
}

# Fires only while messages wait and no worker runs: visible > 0, nothing in flight, and no
# running task (Container Insights, enabled on the cluster; a service without running tasks
# may send no datapoint, hence FILL). A late Container Insights datapoint reads as 0 too, so the
# in-flight test, from the same SQS datapoints as the visible one, keeps the alarm quiet while
# tasks are at work.
resource "aws_cloudwatch_metric_alarm" "queue_has_messages" {
  count               = local.scale_to_zero ? 1 : 0
  alarm_name          = "${var.name}-queue-has-messages"
  alarm_description   = "Messages wait while no worker runs: start one"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.from_zero[0].arn]
  tags                = local.tags

  metric_query {
    id          = "no_worker"
    expression  = "(visible > 0) AND (inflight == 0) AND (FILL(running, 0) == 0)"
    label       = "Messages visible, none in flight, no running task"
    return_data = true
  }

  metric_query {
    id = "visible"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = aws_sqs_queue.this.name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id = "inflight"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      dimensions  = { QueueName = aws_sqs_queue.this.name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id = "running"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      dimensions = {
        ClusterName = aws_ecs_cluster.this.name
        ServiceName = aws_ecs_service.worker.name
      }
      stat   = "Maximum"
      period = 60
    }
  }
}

resource "aws_appautoscaling_policy" "to_zero" {
  count              = local.scale_to_zero ? 1 : 0
  name               = "${var.name}-scale-to-zero"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    metric_aggregation_type = "Maximum"
    cooldown                = 300

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = 0
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "queue_idle" {
  count               = local.scale_to_zero ? 1 : 0
  alarm_name          = "${var.name}-queue-idle"
  alarm_description   = "Nothing visible or in flight for 15 minutes: stop the workers"
  comparison_operator = "LessThanOrEqualToThreshold"
  threshold           = 0
  evaluation_periods  = 15
  alarm_actions       = [aws_appautoscaling_policy.to_zero[0].arn]
  tags                = local.tags

  metric_query {
    id          = "outstanding"
    expression  = "visible + inflight"
    label       = "Visible and in-flight messages"
    return_data = true
  }

  metric_query {
    id = "visible"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = aws_sqs_queue.this.name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id = "inflight"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      dimensions  = { QueueName = aws_sqs_queue.this.name }
      stat        = "Maximum"
      period      = 60
    }
  }
}
