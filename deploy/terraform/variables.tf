variable "environment" {
  description = "dev, staging or prod: names the roles (strata-<environment>-control-plane, -proxy)."
  type        = string
  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "namespace" {
  description = "The Kubernetes namespace strata runs in (the overlays use strata-<environment>)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "The EKS cluster's IAM OIDC provider (IRSA), e.g. arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE."
  type        = string
}

variable "oidc_provider_url" {
  description = "The same provider's URL without https://, e.g. oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE."
  type        = string
}

variable "tags" {
  description = "Tags for strata's own roles."
  type        = map(string)
  default     = {}
}
