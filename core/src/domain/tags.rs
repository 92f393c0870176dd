//! Cost-allocation tags, checked against AWS's tag rules so the reconciler never
//! meets a tag AWS would refuse.

use std::collections::BTreeMap;

use crate::FieldError;

/// IAM allows 50 tags per role; strata puts three of its own on every role
/// (`strata:managed-by`, `strata:project`, `strata:environment`), which leaves 47.
pub const MAX_PROJECT_TAGS: usize = 47;

/// A project's cost tags, sorted by key.
pub type Tags = BTreeMap<String, String>;

fn allowed_char(c: char) -> bool {
    c.is_alphanumeric()
        || c.is_whitespace()
        || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

pub fn validate_tag_key(key: &str) -> Result<(), String> {
    let len = key.chars().count();
    if !(1..=128).contains(&len) {
        return Err(format!(
            "tag keys must be 1 to 128 characters long (got {len})"
        ));
    }
    let lower = key.to_ascii_lowercase();
    if lower.starts_with("aws:") {
        return Err("tag keys must not start with 'aws:' (reserved by AWS)".into());
    }
    if lower.starts_with("strata:") {
        return Err("tag keys must not start with 'strata:' (strata sets those itself)".into());
    }
    if !key.chars().all(allowed_char) {
        return Err("tag keys may contain only letters, digits, spaces and _ . : / = + - @".into());
    }
    Ok(())
}

pub fn validate_tag_value(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if len > 256 {
        return Err(format!(
            "tag values must be at most 256 characters long (got {len})"
        ));
    }
    if !value.chars().all(allowed_char) {
        return Err(
            "tag values may contain only letters, digits, spaces and _ . : / = + - @".into(),
        );
    }
    Ok(())
}

/// Checks a whole tag map, collecting one error per bad key or value.
pub fn validate_tags(tags: &Tags, errors: &mut Vec<FieldError>) {
    if tags.len() > MAX_PROJECT_TAGS {
        errors.push(FieldError::new(
            "tags",
            format!(
                "at most {MAX_PROJECT_TAGS} tags (IAM allows 50 per role and strata adds 3); got {}",
                tags.len()
            ),
        ));
    }
    // Keys that differ only in case collide in Cost Explorer reports.
    let mut seen = std::collections::HashSet::new();
    for (key, value) in tags {
        if let Err(m) = validate_tag_key(key) {
            errors.push(FieldError::new(format!("tags.{key}"), m));
        } else if !seen.insert(key.to_lowercase()) {
            errors.push(FieldError::new(
                format!("tags.{key}"),
                "another tag key differs from this one only in letter case",
            ));
        }
        if let Err(m) = validate_tag_value(value) {
            errors.push(FieldError::new(format!("tags.{key}"), m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules() {
        assert!(validate_tag_key("CostCenter").is_ok());
        assert!(validate_tag_key("team/owner:x=y+z-@ 1").is_ok());
        assert!(validate_tag_key("").is_err());
        assert!(validate_tag_key("AWS:foo").is_err());
        assert!(validate_tag_key("strata:project").is_err());
        assert!(validate_tag_key("a#b").is_err());
        assert!(validate_tag_key(&"k".repeat(129)).is_err());
        assert!(validate_tag_value("").is_ok());
        assert!(validate_tag_value(&"v".repeat(257)).is_err());
        assert!(validate_tag_value("semi;colon").is_err());
    }

    #[test]
    fn too_many_and_case_collisions() {
        let mut errors = vec![];
        let tags: Tags = (0..48)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        validate_tags(&tags, &mut errors);
        assert_eq!(errors.len(), 1);
        let mut errors = vec![];
        let tags: Tags = [
            ("Team".to_string(), "a".to_string()),
            ("team".to_string(), "b".to_string()),
        ]
        .into();
        validate_tags(&tags, &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
