################################################################################
# S3 event (EventBridge rule or bucket notification) -> enqueue Lambda -> FIFO queue
# (S3 cannot notify a FIFO queue, and an EventBridge target sets one fixed message group: the
# Lambda sets one group per key)
################################################################################

resource "aws_cloudwatch_log_group" "lambda" {
  # checkov:skip=CKV_AWS_338:Operational logs; retention is the log_retention_days variable (30 days by default) to keep costs predictable
  # checkov:skip=CKV_AWS_158:Log lines hold keys and reasons only; AWS-managed encryption at rest is enough and avoids a KMS key per install
  name              = "/aws/lambda/${var.name}-enqueue"
  retention_in_days = var.log_retention_days

  tags = local.tags
}

resource "aws_lambda_function" "enqueue" {
  # checkov:skip=CKV_AWS_117:The function only calls SQS; running it outside a VPC avoids NAT costs and cold-start ENIs
  # checkov:skip=CKV_AWS_173:Its only environment value is the queue URL, which is not secret
  # checkov:skip=CKV_AWS_116:Failed events go to an on-failure destination (aws_lambda_function_event_invoke_config), which carries more context than a DLQ
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile the operator owns; the zip is built by make package
  function_name                  = "${var.name}-enqueue"
  description                    = "Turns S3 create/delete events into FIFO messages for the replication worker"
  role                           = aws_iam_role.lambda.arn
  runtime                        = "python3.12"
  architectures                  = ["x86_64"]
  handler                        = "lambda_enqueue.handler.handler"
  filename                       = var.lambda_zip_path
  source_code_hash               = filebase64sha256(var.lambda_zip_path)
  timeout                        = 30
  memory_size                    = 256
  reserved_concurrent_executions = var.lambda_reserved_concurrency

  environment {
    variables = {
      QUEUE_URL = aws_sqs_queue.this.url
      LOG_LEVEL = "INFO"
    }
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.lambda]

  tags = local.tags
}

resource "aws_lambda_function_event_invoke_config" "enqueue" {
  function_name                = aws_lambda_function.enqueue.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 21600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.lambda_failures.arn
    }
  }
}

################################################################################
# The bucket's notification configuration. The API has one per bucket and this resource writes
# it whole: apply replaces every other notification of the bucket and destroy removes them all.
# So it exists only when Terraform may own the whole configuration: event_delivery =
# "notification", or "eventbridge" with manage_bucket_eventbridge (EventBridge on, nothing else).
# With plain "eventbridge" the bucket owner enables EventBridge delivery once (README) and this
# module never writes the bucket's configuration.
################################################################################

locals {
  deliver_by_notification    = var.event_delivery == "notification"
  deliver_by_eventbridge     = var.event_delivery == "eventbridge"
  manage_bucket_notification = local.deliver_by_notification || (local.deliver_by_eventbridge && var.manage_bucket_eventbridge)
}

resource "aws_lambda_permission" "s3" {
  count          = local.deliver_by_notification ? 1 : 0
  statement_id   = "AllowSourceBucket"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.enqueue.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = data.aws_s3_bucket.source.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "this" {
  count       = local.manage_bucket_notification ? 1 : 0
  bucket      = data.aws_s3_bucket.source.id
  eventbridge = local.deliver_by_eventbridge

  dynamic "lambda_function" {
    for_each = local.deliver_by_notification ? [aws_lambda_function.enqueue.arn] : []
    content {
      id                  = "${var.name}-replication"
      lambda_function_arn = lambda_function.value
      events              = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"]
    }
  }

  lifecycle {
    precondition {
      condition     = !(local.deliver_by_notification && var.manage_bucket_eventbridge)
      error_message = "manage_bucket_eventbridge applies to event_delivery = \"eventbridge\" only."
    }
  }

  depends_on = [aws_lambda_permission.s3]
}

# Addresses before delivery became selectable: moved, so that existing deployments keep the
# configuration instead of deleting and recreating it (a delete would drop events meanwhile).
moved {
  from = aws_lambda_permission.s3
  to   = aws_lambda_permission.s3[0]
}

moved {
  from = aws_s3_bucket_notification.this
  to   = aws_s3_bucket_notification.this[0]
}
