################################################################################
# Least privilege: every statement names its actions and resources; no "*" actions.
################################################################################

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# -- enqueue Lambda: send to this queue (and its failure destination), write its own logs --

resource "aws_iam_role" "lambda" {
  name               = "${var.name}-enqueue"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "SendToReplicationQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.this.arn]
  }
  statement {
    sid       = "SendFailedEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.lambda_failures.arn]
  }
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "enqueue"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# -- ECS task execution role: pull the image, write logs, resolve (and decrypt) the target secret --

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.this.arn]
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*", "${aws_cloudwatch_log_group.migrate.arn}:*"]
  }
  # The single target's secret, which ECS injects; with `targets` the tasks read theirs (task role).
  dynamic "statement" {
    for_each = local.multi_target || var.secret == null ? [] : [var.secret]
    content {
      sid       = "TargetCredentials"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }

  # A secret encrypted with a customer-managed key: ECS decrypts it with this role, through
  # Secrets Manager in the secret's own region only.
  dynamic "statement" {
    for_each = var.secret_kms_key_arn == null || local.secret_region == null ? [] : [var.secret_kms_key_arn]
    content {
      sid       = "DecryptTargetCredentials"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.secret_region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# -- the task role (worker and migrate): read the source bucket (and decrypt its objects), use this queue --

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ListSourceBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [data.aws_s3_bucket.source.arn]
  }
  statement {
    sid       = "ReadSourceObjects"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"]
    resources = ["${data.aws_s3_bucket.source.arn}/*"]
  }
  statement {
    sid = "ConsumeReplicationQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      # An interrupted copy (shutdown, the 12-hour lease cap) is requeued as a fresh message.
      "sqs:SendMessage",
    ]
    resources = [aws_sqs_queue.this.arn]
  }

  statement {
    # Failures no retry can fix go to the dead-letter queue at once, with their reason.
    sid       = "DeadLetterPermanentFailures"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # SSE-KMS / DSSE-KMS objects: GetObject needs kms:Decrypt on the object's key (HEAD does not).
  # Only through S3 in the bucket's region, so the role cannot decrypt anything else with them.
  dynamic "statement" {
    for_each = length(var.source_kms_key_arns) == 0 ? [] : [var.source_kms_key_arns]
    content {
      sid       = "DecryptSourceObjects"
      actions   = ["kms:Decrypt"]
      resources = statement.value
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${data.aws_s3_bucket.source.region}.amazonaws.com"]
      }
    }
  }

  # `targets`: each task reads its targets' secrets itself (secret_id in TARGETS), exactly these.
  dynamic "statement" {
    for_each = local.multi_target ? [local.target_secret_arns] : []
    content {
      sid       = "TargetCredentials"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = statement.value
    }
  }

  # Target secrets under customer-managed keys: decrypted through Secrets Manager in the secret's
  # own region only, as the execution role does for the single target's secret.
  dynamic "statement" {
    for_each = local.target_secret_keys_by_region
    content {
      sid       = "DecryptTargetCredentials${join("", [for part in split("-", statement.key) : title(part)])}"
      actions   = ["kms:Decrypt"]
      resources = statement.value
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${statement.key}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# -- EventBridge Scheduler (drift_repair): run the migration task definition on this cluster,
# handing it exactly the task and execution roles, and record failed runs --

data "aws_iam_policy_document" "scheduler_assume" {
  count = local.drift_repair_enabled ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count              = local.drift_repair_enabled ? 1 : 0
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume[0].json
  tags               = local.tags
}

data "aws_iam_policy_document" "scheduler" {
  count = local.drift_repair_enabled ? 1 : 0

  statement {
    sid     = "RunMigrationTask"
    actions = ["ecs:RunTask"]
    # Every revision of the migration family (each apply registers one), on this cluster only.
    resources = ["arn:${data.aws_partition.current.partition}:ecs:${local.region}:${local.account_id}:task-definition/${aws_ecs_task_definition.migrate.family}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "PassTaskRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task.arn, aws_iam_role.execution.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    sid       = "DeadLetterFailedRuns"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.drift_repair_failures[0].arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count  = local.drift_repair_enabled ? 1 : 0
  name   = "run-migration"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler[0].json
}

# -- source_inventory: the migration task reads the inventory's manifests and data files --

data "aws_iam_policy_document" "task_inventory" {
  count = local.inventory_enabled ? 1 : 0

  statement {
    sid       = "ReadSourceInventory"
    actions   = ["s3:GetObject"]
    resources = ["${var.source_inventory.destination_bucket_arn}/${local.inventory_root}/*"]
  }
  statement {
    # A manifest named wrongly is then a 404 (not an AccessDenied), and the newest can be found.
    sid       = "ListSourceInventory"
    actions   = ["s3:ListBucket"]
    resources = [var.source_inventory.destination_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.inventory_root}/*"]
    }
  }
}

resource "aws_iam_role_policy" "task_inventory" {
  count  = local.inventory_enabled ? 1 : 0
  name   = "read-source-inventory"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_inventory[0].json
}
