################################################################################
# Required: what to replicate, and where to
################################################################################

variable "bucket" {
  description = "Name of the existing S3 bucket to replicate (the source)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket)) && !strcontains(var.bucket, "..")
    error_message = "bucket must be a valid S3 bucket name: 3-63 characters of a-z, 0-9, '.' and '-'."
  }
}

variable "secret" {
  description = "ARN of the Secrets Manager secret holding the target credentials as JSON: {\"access_key_id\": \"...\", \"secret_access_key\": \"...\"}. Required without `targets`; leave unset with `targets` (each target names its own secret)."
  type        = string
  default     = null

  validation {
    condition     = var.secret == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.secret))
    error_message = "secret must be the full ARN of a Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)."
  }
}

variable "endpoint" {
  description = "HTTPS endpoint of the target: Lyve Cloud (e.g. https://s3.us-east-1.lyvecloud.seagate.com) or any S3-compatible store. Required without `targets`; leave unset with `targets`."
  type        = string
  default     = null

  validation {
    condition     = var.endpoint == null || can(regex("^https://[^/\\s]+", var.endpoint))
    error_message = "endpoint must be an https:// URL."
  }
}

variable "target_bucket" {
  description = "Name of the existing bucket on the target endpoint that receives the replica. Required without `targets`; leave unset with `targets`."
  type        = string
  default     = null

  validation {
    condition     = var.target_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.target_bucket))
    error_message = "target_bucket must be a valid bucket name: 3-63 characters of a-z, 0-9, '.' and '-'."
  }
}

variable "secret_kms_key_arn" {
  description = "ARN of the customer-managed KMS key that encrypts the `secret` (null: the AWS-managed key aws/secretsmanager, which needs no grant). ECS reads the secret with the task execution role, which is then allowed kms:Decrypt on this key through Secrets Manager only. Leave unset with `targets`: each target's `secret_kms_key_arn` says it there."
  type        = string
  default     = null

  validation {
    condition     = var.secret_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.secret_kms_key_arn))
    error_message = "secret_kms_key_arn must be null or a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID); an alias ARN cannot be granted kms:Decrypt."
  }
}

variable "source_kms_key_arns" {
  description = "ARNs of the customer-managed KMS keys that encrypt objects in the source bucket (SSE-KMS, DSSE-KMS). Reading such an object needs kms:Decrypt on its key (HEAD does not), so without them GetObject fails with AccessDenied. The worker and migration tasks are allowed kms:Decrypt on these keys through S3 only. Keys of another account must also grant the task role in their key policy."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.source_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", arn))])
    error_message = "source_kms_key_arns must hold KMS key ARNs (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID); alias ARNs cannot be granted kms:Decrypt."
  }
}

variable "target_region" {
  description = "Region the target endpoint signs requests for (Lyve Cloud: the region in the endpoint name); null: us-east-1. Leave unset with `targets`."
  type        = string
  # null rather than "us-east-1", so that a value set alongside `targets` can be told apart and refused.
  default = null
}

################################################################################
# Several named targets (instead of the single target above)
################################################################################

variable "targets" {
  description = "Named targets the bucket is replicated to, instead of the single target of `secret`, `endpoint`, `target_bucket` and `target_region` (which must then be left unset). Each: `type` \"s3\" (an S3-compatible store such as Lyve Cloud: `bucket`, `endpoint_url` (https), `region` (null: us-east-1), `addressing_style` path|virtual|auto (null: the client's choice)) or \"azure\" (Azure Blob Storage: `container`, `account_url` (https, null: from the secret)); `secret_arn`: the Secrets Manager secret holding the credentials as JSON, {\"access_key_id\": \"...\", \"secret_access_key\": \"...\"} for s3 and {\"connection_string\": \"...\"} or {\"account_name\": \"...\", \"account_key\": \"...\"} for azure; `secret_kms_key_arn`: the customer-managed KMS key of that secret (null: aws/secretsmanager). The worker and migration tasks get them as one environment variable, TARGETS (JSON, `secret_id` = the secret's ARN), read the secrets themselves (the task role may read exactly these) and publish their metrics per target too (a `Failures` alarm each). At most 8; names of 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit (they become metric dimensions and alarm names)."
  type = map(object({
    type               = string
    secret_arn         = string
    secret_kms_key_arn = optional(string)
    # s3
    bucket           = optional(string)
    endpoint_url     = optional(string)
    region           = optional(string)
    addressing_style = optional(string)
    # azure
    container   = optional(string)
    account_url = optional(string)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = length(var.targets) <= 8
    error_message = "targets holds at most 8 targets, not ${length(var.targets)}."
  }

  validation {
    condition     = alltrue([for name in keys(var.targets) : can(regex("^[a-z0-9][a-z0-9-]{0,31}$", name))])
    error_message = "targets: every name must be 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit (^[a-z0-9][a-z0-9-]{0,31}$); not: ${join(", ", [for name in keys(var.targets) : jsonencode(name) if !can(regex("^[a-z0-9][a-z0-9-]{0,31}$", name))])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : contains(["s3", "azure"], coalesce(t.type, "-"))])
    error_message = "targets: type must be \"s3\" or \"azure\"; not for: ${join(", ", [for name, t in var.targets : name if !contains(["s3", "azure"], coalesce(t.type, "-"))])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", t.secret_arn))])
    error_message = "targets: secret_arn must be the full ARN of a Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME); not for: ${join(", ", [for name, t in var.targets : name if !can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", t.secret_arn))])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.secret_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", t.secret_kms_key_arn))])
    error_message = "targets: secret_kms_key_arn must be null or a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID); an alias ARN cannot be granted kms:Decrypt."
  }

  validation {
    condition = alltrue([
      for t in values(var.targets) : t.type != "s3" || (can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", t.bucket)) && !strcontains(coalesce(t.bucket, "-"), ".."))
    ])
    error_message = "targets: an s3 target needs `bucket`, a valid bucket name (3-63 characters of a-z, 0-9, '.' and '-'); not for: ${join(", ", [for name, t in var.targets : name if t.type == "s3" && !(can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", t.bucket)) && !strcontains(coalesce(t.bucket, "-"), ".."))])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.type != "s3" || can(regex("^https://[^/\\s]+", t.endpoint_url))])
    error_message = "targets: an s3 target needs `endpoint_url`, an https:// URL; not for: ${join(", ", [for name, t in var.targets : name if t.type == "s3" && !can(regex("^https://[^/\\s]+", t.endpoint_url))])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.addressing_style == null || contains(["path", "virtual", "auto"], coalesce(t.addressing_style, "-"))])
    error_message = "targets: addressing_style must be null, \"path\", \"virtual\" or \"auto\"."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.type != "s3" || (t.container == null && t.account_url == null)])
    error_message = "targets: an s3 target takes `bucket` and `endpoint_url`, not the azure fields `container` or `account_url`; for: ${join(", ", [for name, t in var.targets : name if t.type == "s3" && (t.container != null || t.account_url != null)])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.type != "azure" || t.bucket == null])
    error_message = "targets: an azure target takes a `container`, not a `bucket`; for: ${join(", ", [for name, t in var.targets : name if t.type == "azure" && t.bucket != null])}."
  }

  # Azure container names: 3-63 characters of a-z and 0-9, single hyphens between them.
  validation {
    condition = alltrue([
      for t in values(var.targets) : t.type != "azure" || (can(regex("^[a-z0-9]+(-[a-z0-9]+)*$", t.container)) && length(coalesce(t.container, "-")) >= 3 && length(coalesce(t.container, "-")) <= 63)
    ])
    error_message = "targets: an azure target needs `container`, a valid container name (3-63 characters of a-z, 0-9 and single hyphens, starting and ending with a letter or digit); not for: ${join(", ", [for name, t in var.targets : name if t.type == "azure" && !(can(regex("^[a-z0-9]+(-[a-z0-9]+)*$", t.container)) && length(coalesce(t.container, "-")) >= 3 && length(coalesce(t.container, "-")) <= 63)])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.type != "azure" || (t.endpoint_url == null && t.region == null && t.addressing_style == null)])
    error_message = "targets: an azure target takes `container` and `account_url`, not the s3 fields `endpoint_url`, `region` or `addressing_style`; for: ${join(", ", [for name, t in var.targets : name if t.type == "azure" && (t.endpoint_url != null || t.region != null || t.addressing_style != null)])}."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.account_url == null || can(regex("^https://[^/\\s]+", t.account_url))])
    error_message = "targets: account_url must be null or an https:// URL (https://ACCOUNT.blob.core.windows.net)."
  }
}

################################################################################
# How S3 events reach the enqueue Lambda
################################################################################

variable "event_delivery" {
  description = "How the bucket's events reach the enqueue Lambda. \"eventbridge\" (the choice for a bucket that already has notifications): an EventBridge rule on the default bus; the bucket's notification configuration is left alone (the bucket owner enables EventBridge delivery once, see the README), so other notifications on the bucket are kept. \"notification\": an S3 bucket notification to the Lambda; Terraform then owns the bucket's whole notification configuration, so apply replaces and destroy removes every other notification of the bucket: only for buckets with no other notifications. Required, with no default: a deployment made before this choice existed must not switch delivery, and drop its bucket notification, just by being applied again."
  type        = string
  nullable    = false

  validation {
    condition     = contains(["eventbridge", "notification"], var.event_delivery)
    error_message = "event_delivery must be \"eventbridge\" or \"notification\"."
  }
}

variable "manage_bucket_eventbridge" {
  description = "With event_delivery = \"eventbridge\": let Terraform turn on the bucket's EventBridge delivery itself. It does so by writing the bucket's whole notification configuration (EventBridge only), which removes every other notification of the bucket, and destroy turns EventBridge delivery off: only for buckets with no other notifications. false (default): the bucket owner enables it once, keeping the existing notifications (README)."
  type        = bool
  default     = false
  nullable    = false
}

variable "eventbridge_retry_attempts" {
  description = "Times EventBridge retries invoking the enqueue Lambda before the event goes to the enqueue-failures queue (its dead-letter queue)."
  type        = number
  default     = 185

  validation {
    condition     = var.eventbridge_retry_attempts >= 0 && var.eventbridge_retry_attempts <= 185
    error_message = "eventbridge_retry_attempts must be between 0 and 185."
  }
}

variable "eventbridge_max_event_age_seconds" {
  description = "How long EventBridge keeps retrying an event it could not hand to the enqueue Lambda, in seconds."
  type        = number
  default     = 86400

  validation {
    condition     = var.eventbridge_max_event_age_seconds >= 60 && var.eventbridge_max_event_age_seconds <= 86400
    error_message = "eventbridge_max_event_age_seconds must be between 60 and 86400 (24 h)."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of the enqueue Lambda: the most invocations that run at once, and a share of the account's concurrency no other function can take. Above it, events are throttled and Lambda retries them from its own queue (the throttles alarm fires when that lasts 5 minutes). At least 1 (0 would stop every event); Lambda refuses more than the account's unreserved concurrency minus 100."
  type        = number
  default     = 50
  nullable    = false

  validation {
    condition     = var.lambda_reserved_concurrency >= 1 && floor(var.lambda_reserved_concurrency) == var.lambda_reserved_concurrency
    error_message = "lambda_reserved_concurrency must be a whole number, at least 1 (0 stops the function from handling any event)."
  }
}

################################################################################
# Network: the worker runs in existing private subnets with a route to the internet
################################################################################

variable "vpc_id" {
  description = "VPC of the subnets below; the worker's security group is created in it."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets for the worker and migration tasks. They need a route to the target endpoint (NAT) and to S3/SQS/ECR/Logs."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must hold at least one subnet id (subnet-...)."
  }
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only for public subnets without NAT)."
  type        = bool
  default     = false
}

################################################################################
# Naming
################################################################################

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "lyve-replicator"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

################################################################################
# Artifacts
################################################################################

variable "image_tag" {
  description = "Tag of the worker image in the ECR repository created here, as `make push` pushed it (the short commit id). Required: the repository's tags are immutable and nothing pushes `latest`; the image must exist in the repository before the service is pointed at it (looked up, and pinned by digest)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && lower(var.image_tag) != "latest"
    error_message = "image_tag must be the tag `make push` pushed (e.g. the short commit id): 1-128 characters of A-Z, a-z, 0-9, '_', '.' and '-', and not \"latest\" (the repository's tags are immutable and `latest` is never pushed)."
  }
}

variable "lambda_zip_path" {
  description = "Path of the enqueue Lambda package built by `make package`."
  type        = string
  default     = "../build/lambda_enqueue.zip"
}

################################################################################
# Queue and worker behaviour
################################################################################

variable "visibility_timeout_seconds" {
  description = "Visibility timeout of the FIFO queue; the worker extends it while a copy runs. Must exceed shutdown_deadline_seconds, and leave the worker time to stop a copy whose lease it cannot renew (connect + read timeout + 10 s: 80 with the defaults)."
  type        = number
  default     = 120

  validation {
    condition     = var.visibility_timeout_seconds >= 80 && var.visibility_timeout_seconds <= 43200
    error_message = "visibility_timeout_seconds must be between 80 (the worker's connect + read timeout + 10 s) and 43200 (12 h)."
  }
}

variable "max_receive_count" {
  description = "Receives before a message moves to the dead-letter queue. Interruptions the worker controls (shutdown, scale-in, the 12-hour lease cap) never count; each task kill (SIGKILL, out of memory, host loss) uses one receive."
  type        = number
  default     = 8

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "shutdown_deadline_seconds" {
  description = "Seconds the worker takes after SIGTERM to finish or hand back work; the container's stopTimeout is this plus 5. The queue's long poll, which the worker uses too, ends 2 s inside it (20 s, SQS's longest, from 22 up)."
  type        = number
  default     = 25

  validation {
    condition     = var.shutdown_deadline_seconds >= 5 && var.shutdown_deadline_seconds <= 115
    error_message = "shutdown_deadline_seconds must be between 5 and 115 (ECS stopTimeout is at most 120)."
  }
}

variable "worker_concurrency" {
  description = "Keys reconciled in parallel by one worker task."
  type        = number
  default     = 16

  validation {
    condition     = var.worker_concurrency >= 1 && var.worker_concurrency <= 512
    error_message = "worker_concurrency must be between 1 and 512."
  }
}

variable "part_size_mib" {
  description = "Multipart part size in MiB (5 to 4096; grows for objects above part_size x 10,000)."
  type        = number
  default     = 16

  validation {
    condition     = var.part_size_mib >= 5 && var.part_size_mib <= 4096
    error_message = "part_size_mib must be between 5 and 4096."
  }
}

variable "max_buffer_mib" {
  description = "Part buffers held in memory per task, in MiB. Keep well below worker_memory."
  type        = number
  default     = 256

  validation {
    condition     = var.max_buffer_mib >= 16
    error_message = "max_buffer_mib must be at least 16."
  }
}

variable "worker_cpu" {
  description = "Fargate CPU units of a worker task."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.worker_cpu)
    error_message = "worker_cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "worker_memory" {
  description = "Memory of a worker task in MiB (must be valid for worker_cpu on Fargate)."
  type        = number
  default     = 2048

  validation {
    condition     = var.worker_memory >= 512 && var.worker_memory <= 122880
    error_message = "worker_memory must be between 512 and 122880 MiB."
  }
}

variable "migrate_cpu" {
  description = "Fargate CPU units of a migration task."
  type        = number
  default     = 2048

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.migrate_cpu)
    error_message = "migrate_cpu must be a Fargate CPU size."
  }
}

variable "migrate_memory" {
  description = "Memory of a migration task in MiB."
  type        = number
  default     = 4096

  validation {
    condition     = var.migrate_memory >= 512 && var.migrate_memory <= 122880
    error_message = "migrate_memory must be between 512 and 122880 MiB."
  }
}

################################################################################
# Scaling
################################################################################

variable "min_tasks" {
  description = "Fewest worker tasks. 0 lets the service scale to zero when the queue is empty."
  type        = number
  default     = 1

  validation {
    condition     = var.min_tasks >= 0 && var.min_tasks <= 100
    error_message = "min_tasks must be between 0 and 100."
  }
}

variable "max_tasks" {
  description = "Most worker tasks."
  type        = number
  default     = 10

  validation {
    condition     = var.max_tasks >= 1 && var.max_tasks <= 1000
    error_message = "max_tasks must be between 1 and 1000."
  }
}

variable "backlog_per_task" {
  description = "Target of visible messages per running task (target tracking)."
  type        = number
  default     = 100

  validation {
    condition     = var.backlog_per_task >= 1
    error_message = "backlog_per_task must be at least 1."
  }
}

################################################################################
# Monitoring
################################################################################

variable "log_retention_days" {
  description = "Retention of the Lambda, worker and migration log groups."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest queued message is older than this (replication falling behind)."
  type        = number
  default     = 900

  validation {
    condition     = var.oldest_message_alarm_seconds >= 60
    error_message = "oldest_message_alarm_seconds must be at least 60."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic notified by the alarms (null: alarms without notification)."
  type        = string
  default     = null
}

################################################################################
# Scheduled drift repair and S3 Inventory (both off by default)
################################################################################

variable "drift_repair" {
  description = "Scheduled check-and-repair: EventBridge Scheduler runs the migration task on `schedule` (in `timezone`), as `shards` tasks (`--shard i/N --splits SPLITS`), each with `--metrics` (the drift-repair dashboard widgets and alarms) and, with `delete`, `--delete --max-delete max_delete` (the cap applies per task; deletes are re-checked at the source and an empty source is refused). It repairs what the event pipeline lost: failed invocations, events left in the enqueue-failures queue, missed deletes. `schedule`: rate(N minutes|hours|days), cron(6 fields) or at(yyyy-mm-ddThh:mm:ss). `splits`: with more than one shard, the shards - 1 split points `make plan-shards SHARDS=n` prints (in ascending byte order), shared by every task so that their key ranges tile the key space; run it again to rebalance. `overdue_after_hours` (1-168): how long the reports may fall short before the overdue alarm (null: three days for a daily schedule, twice a rate() interval otherwise, none for at()). Choose an interval longer than a run takes (the `Seconds` metric): overlapping runs repeat each other's work. Each run lists both buckets in full: keys / 1,000 LIST requests per side."
  type = object({
    enabled             = optional(bool, false)
    schedule            = optional(string, "rate(1 day)")
    timezone            = optional(string, "UTC")
    shards              = optional(number, 1)
    delete              = optional(bool, true)
    max_delete          = optional(number, 1000)
    overdue_after_hours = optional(number)
    splits              = optional(list(string), [])
  })
  default  = {}
  nullable = false

  validation {
    condition     = can(regex("^(rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)|cron\\([^ ()]+( [^ ()]+){5}\\)|at\\([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\))$", var.drift_repair.schedule))
    error_message = "drift_repair.schedule must be rate(N minutes|hours|days), cron(minutes hours day-of-month month day-of-week year) or at(yyyy-mm-ddThh:mm:ss)."
  }

  validation {
    condition     = var.drift_repair.shards >= 1 && var.drift_repair.shards <= 64 && floor(var.drift_repair.shards) == var.drift_repair.shards
    error_message = "drift_repair.shards must be a whole number from 1 to 64."
  }

  validation {
    condition     = length(var.drift_repair.splits) == max(0, var.drift_repair.shards - 1)
    error_message = "drift_repair.splits must hold shards - 1 = ${max(0, var.drift_repair.shards - 1)} split points, not ${length(var.drift_repair.splits)}: run `make plan-shards SHARDS=${var.drift_repair.shards}` and paste its \"splits\" (one shard takes none)."
  }

  # S3 lists in UTF-8 byte order, the order Terraform's sort() keeps. Terraform also stores
  # strings in Unicode NFC, which can reorder keys holding combining marks.
  validation {
    condition     = sort(var.drift_repair.splits) == var.drift_repair.splits
    error_message = "drift_repair.splits must be in ascending byte order, as `make plan-shards` prints them (Terraform stores strings in Unicode NFC: a key with combining marks may have changed; any keys in ascending order still cover every key, they only balance the shards)."
  }

  validation {
    condition     = var.drift_repair.max_delete >= 0 && floor(var.drift_repair.max_delete) == var.drift_repair.max_delete
    error_message = "drift_repair.max_delete must be a whole number, 0 or more (per task)."
  }

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$", var.drift_repair.timezone))
    error_message = "drift_repair.timezone must be a time zone name such as UTC or Europe/Paris."
  }

  validation {
    condition     = var.drift_repair.overdue_after_hours == null ? true : (var.drift_repair.overdue_after_hours >= 1 && var.drift_repair.overdue_after_hours <= 168 && floor(var.drift_repair.overdue_after_hours) == var.drift_repair.overdue_after_hours)
    error_message = "drift_repair.overdue_after_hours must be null or a whole number of hours from 1 to 168 (CloudWatch evaluates an alarm over at most 7 days)."
  }
}

variable "source_inventory" {
  description = "S3 Inventory of the source bucket (current versions; Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, EncryptionStatus; CSV), written `frequency` (Daily, or Weekly: Sundays UTC) under `prefix` in the existing bucket `destination_bucket_arn` (not the source bucket; in the source bucket's region, as S3 requires), for `python -m migrate --source-inventory s3://.../manifest.json`: a migration or check that lists no source key (output source_inventory_manifest). The migration task role may read that prefix. The destination bucket's policy must allow s3.amazonaws.com to write there: Terraform does not write it (a bucket has one policy; writing it would replace the owner's), the statement is in the output source_inventory_destination_policy_statement and the README. `destination_account_id`: the destination bucket's owner, when it is another account."
  type = object({
    enabled                = optional(bool, false)
    destination_bucket_arn = optional(string, "")
    destination_account_id = optional(string)
    prefix                 = optional(string, "inventory")
    frequency              = optional(string, "Daily")
    format                 = optional(string, "CSV")
  })
  default  = {}
  nullable = false

  validation {
    condition     = !var.source_inventory.enabled || can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.source_inventory.destination_bucket_arn))
    error_message = "source_inventory.destination_bucket_arn must be an S3 bucket ARN (arn:aws:s3:::BUCKET) when the inventory is enabled."
  }

  validation {
    condition     = var.source_inventory.destination_account_id == null || can(regex("^[0-9]{12}$", var.source_inventory.destination_account_id))
    error_message = "source_inventory.destination_account_id must be null or a 12-digit account id."
  }

  validation {
    condition     = can(regex("^([A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*)?$", var.source_inventory.prefix))
    error_message = "source_inventory.prefix must be empty or /-separated segments of letters, digits and !_.*'()- (no leading, trailing or double /)."
  }

  validation {
    condition     = contains(["Daily", "Weekly"], var.source_inventory.frequency)
    error_message = "source_inventory.frequency must be \"Daily\" or \"Weekly\"."
  }

  validation {
    condition     = var.source_inventory.format == "CSV"
    error_message = "source_inventory.format must be \"CSV\": --source-inventory reads gzip-compressed CSV inventories."
  }
}
