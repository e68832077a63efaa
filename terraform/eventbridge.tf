################################################################################
# event_delivery = "eventbridge": a rule on the default bus -> the enqueue Lambda. Rules coexist
# with every other consumer of the bucket's events; nothing here writes the bucket's
# notification configuration (see lambda.tf for the one case that does).
################################################################################

resource "aws_cloudwatch_event_rule" "this" {
  count          = local.deliver_by_eventbridge ? 1 : 0
  name           = "${var.name}-objects"
  description    = "Objects created or deleted in ${var.bucket}, for the replication enqueue Lambda"
  event_bus_name = "default"

  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created", "Object Deleted"]
    detail = {
      bucket = { name = [var.bucket] }
    }
  })

  tags = local.tags
}

resource "aws_cloudwatch_event_target" "this" {
  count          = local.deliver_by_eventbridge ? 1 : 0
  rule           = aws_cloudwatch_event_rule.this[0].name
  event_bus_name = aws_cloudwatch_event_rule.this[0].event_bus_name
  target_id      = "enqueue"
  arn            = aws_lambda_function.enqueue.arn

  # Retries cover failures to hand the event to Lambda (the invocation is asynchronous: the
  # function's own errors are retried by Lambda, then sent to the same queue by its on-failure
  # destination).
  retry_policy {
    maximum_retry_attempts       = var.eventbridge_retry_attempts
    maximum_event_age_in_seconds = var.eventbridge_max_event_age_seconds
  }

  dead_letter_config {
    arn = aws_sqs_queue.lambda_failures.arn
  }

  depends_on = [aws_lambda_permission.eventbridge, aws_sqs_queue_policy.lambda_failures]
}

resource "aws_lambda_permission" "eventbridge" {
  count         = local.deliver_by_eventbridge ? 1 : 0
  statement_id  = "AllowEventBridgeRule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.enqueue.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.this[0].arn
}

# EventBridge writes undeliverable events to the enqueue-failures queue as a service principal:
# the queue's policy must allow it, for this rule only.
data "aws_iam_policy_document" "lambda_failures" {
  count = local.deliver_by_eventbridge ? 1 : 0

  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.lambda_failures.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.this[0].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "lambda_failures" {
  count     = local.deliver_by_eventbridge ? 1 : 0
  queue_url = aws_sqs_queue.lambda_failures.id
  policy    = data.aws_iam_policy_document.lambda_failures[0].json
}
