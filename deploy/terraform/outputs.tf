output "control_plane_role_arn" {
  description = "For the control plane's service account (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.strata["control-plane"].arn
}

output "proxy_role_arn" {
  description = "For the proxy's service account; also what project roles must trust (STRATA_TRUSTED_PRINCIPALS)."
  value       = aws_iam_role.strata["proxy"].arn
}
