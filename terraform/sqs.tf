################################################################################
# FIFO queue in high-throughput mode, with its FIFO dead-letter queue
################################################################################

locals {
  # The long poll of the queue and of the worker, one value (ecs.tf passes it to the worker as
  # RECEIVE_WAIT_SECONDS): SQS's longest, 20 s, but 2 s inside the worker's shutdown deadline, so
  # that a poll under way at SIGTERM returns, and puts back what it got, before the deadline.
  receive_wait_seconds = min(20, floor(var.shutdown_deadline_seconds) - 2)
}

resource "aws_sqs_queue" "this" {
  name                        = local.queue_name
  fifo_queue                  = true
  content_based_deduplication = false # the Lambda sets MessageDeduplicationId from key + sequencer
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"
  visibility_timeout_seconds  = var.visibility_timeout_seconds
  message_retention_seconds   = 1209600
  receive_wait_time_seconds   = local.receive_wait_seconds
  sqs_managed_sse_enabled     = true

  tags = local.tags
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq.fifo"
  fifo_queue                = true
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true

  tags = local.tags
}

resource "aws_sqs_queue_redrive_policy" "this" {
  queue_url = aws_sqs_queue.this.id
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.this.arn]
  })
}

################################################################################
# Where S3 events go when the Lambda failed them after its retries
################################################################################

resource "aws_sqs_queue" "lambda_failures" {
  name                      = "${var.name}-enqueue-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true

  tags = local.tags
}
