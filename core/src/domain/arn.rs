//! Resource ARNs a project declares it owns.

use crate::FieldError;

/// At most this many extra resources per project (the tagging API takes 20 per
/// call; 100 keeps a pass to a handful of calls).
pub const MAX_PROJECT_RESOURCES: usize = 100;

/// Checks the shape `arn:{partition}:{service}:{region}:{account}:{resource}`; the
/// tagging API is the judge of the rest.
pub fn validate_resource_arn(arn: &str) -> Result<(), String> {
    if arn.len() > 2048 || arn.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be at most 2048 characters with no white space".into());
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov")
        && !parts[2].is_empty()
        && !parts[5].is_empty()
        && (parts[4].is_empty()
            || (parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit())));
    if !ok {
        return Err(
            "must be an ARN such as arn:aws:s3:::my-bucket or arn:aws:sqs:eu-west-1:123456789012:queue".into(),
        );
    }
    if parts[2] == "iam" {
        return Err(
            "IAM resources cannot be attached; strata tags the project's own role itself".into(),
        );
    }
    Ok(())
}

/// Checks a project's resource list, one error per bad entry.
pub fn validate_resources(arns: &[String], errors: &mut Vec<FieldError>) {
    if arns.len() > MAX_PROJECT_RESOURCES {
        errors.push(FieldError::new(
            "resources",
            format!("at most {MAX_PROJECT_RESOURCES} resources"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, arn) in arns.iter().enumerate() {
        if let Err(m) = validate_resource_arn(arn) {
            errors.push(FieldError::new(format!("resources[{i}]"), m));
        } else if !seen.insert(arn.as_str()) {
            errors.push(FieldError::new(
                format!("resources[{i}]"),
                format!("'{arn}' is listed twice"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert!(validate_resource_arn("arn:aws:s3:::my-bucket").is_ok());
        assert!(validate_resource_arn("arn:aws:sqs:eu-west-1:123456789012:q").is_ok());
        assert!(
            validate_resource_arn(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
            )
            .is_ok()
        );
        for bad in [
            "",
            "arn:aws:s3",
            "arn:x:s3:::b",
            "arn:aws:s3:::",
            "arn:aws:sqs:eu-west-1:12:q",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:s3:::a b",
        ] {
            assert!(validate_resource_arn(bad).is_err(), "{bad}");
        }
    }
}
