resource "aws_ecr_repository" "this" {
  # checkov:skip=CKV_AWS_136:AES256 (AWS-managed) encryption; a customer KMS key is the operator's choice
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  force_delete         = false

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "AES256"
  }

  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 20 most recent images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 20 }
      action       = { type = "expire" }
    }]
  })
}

# The image the tasks run: looked up by the tag `make push` pushed, so a plan fails here, naming
# the tag, instead of pointing the service at an image that was never pushed; the task
# definitions then pin its digest.
data "aws_ecr_image" "worker" {
  repository_name = aws_ecr_repository.this.name
  image_tag       = var.image_tag
}
