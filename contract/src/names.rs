//! String identifiers with the rules AWS and strata put on them.

use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

fn is_slug(value: &str, min: usize, max: usize) -> Result<(), String> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(format!(
            "must be {min} to {max} characters long (got {len})"
        ));
    }
    let bytes = value.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return Err("must start with a lowercase letter".into());
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may contain only lowercase letters, digits and '-'".into());
    }
    if value.ends_with('-') || value.contains("--") {
        return Err("must not end with '-' or contain '--'".into());
    }
    Ok(())
}

/// A project's name: a DNS-style slug, unique per environment. At most 40 characters
/// so that the IAM role named after it fits IAM's 64-character limit with room for the
/// environment and a disambiguating suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z][a-z0-9-]*[a-z0-9]$", min_length = 2, max_length = 40, example = "checkout-api")]
pub struct ProjectSlug(String);

impl ProjectSlug {
    pub const MAX_LEN: usize = 40;

    pub fn parse(value: &str) -> Result<Self, String> {
        is_slug(value, 2, Self::MAX_LEN)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The team that owns a project (a slug, used in dashboards and as a filter).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z][a-z0-9-]*[a-z0-9]$", min_length = 2, max_length = 64, example = "payments")]
pub struct TeamName(String);

impl TeamName {
    pub fn parse(value: &str) -> Result<Self, String> {
        is_slug(value, 2, 64)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A model id as Mantle names it, e.g. `openai.gpt-oss-120b` or
/// `mistral.mistral-large-3-675b-instruct` (Bedrock Runtime's `-v1:0` form parses too).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._:-]*$", min_length = 3, max_length = 128, example = "openai.gpt-oss-120b")]
pub struct ModelId(String);

/// Read back from strata's own documents (the proxy's snapshot), still validated.
impl<'de> serde::Deserialize<'de> for ModelId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl ModelId {
    pub fn parse(value: &str) -> Result<Self, String> {
        Self::check(value)?;
        Ok(Self(value.to_owned()))
    }

    /// Whether `value` is a well-formed model id, without keeping it.
    pub fn check(value: &str) -> Result<(), String> {
        let len = value.len();
        if !(3..=128).contains(&len) {
            return Err(format!("must be 3 to 128 characters long (got {len})"));
        }
        let first = value.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err("must start with a lowercase letter or digit".into());
        }
        if !value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b':' | b'-')
        }) {
            return Err(
                "may contain only lowercase letters, digits and '.', '_', ':', '-' \
                 (e.g. openai.gpt-oss-120b)"
                    .into(),
            );
        }
        if !value.contains('.') {
            return Err("must be '<provider>.<model>', e.g. openai.gpt-oss-120b".into());
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The provider part before the first '.', e.g. `openai`.
    pub fn provider(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
}

/// The subject (`sub` claim) of a person or workload, as the identity provider issues it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, min_length = 1, max_length = 255, example = "alice@example.com")]
pub struct Subject(String);

impl Subject {
    pub const MAX_LEN: usize = 255;

    pub fn parse(value: &str) -> Result<Self, String> {
        let len = value.len();
        if !(1..=Self::MAX_LEN).contains(&len) {
            return Err(format!(
                "must be 1 to {} characters long (got {len})",
                Self::MAX_LEN
            ));
        }
        if !value.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b'-' | b'@' | b':' | b'|' | b'+' | b'=')
        }) {
            return Err(
                "may contain only ASCII letters, digits and '.', '_', '-', '@', ':', '|', '+', '='"
                    .into(),
            );
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(ProjectSlug, TeamName, ModelId, Subject);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["ab", "checkout-api", "a1", "x-y-z9"] {
            assert!(ProjectSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "Abc",
            "ab-",
            "a--b",
            "a_b",
            "a b",
            &"a".repeat(41),
        ] {
            assert!(ProjectSlug::parse(bad).is_err(), "{bad}");
        }
        assert!(ProjectSlug::parse(&"a".repeat(40)).is_ok());
    }

    #[test]
    fn model_ids() {
        for ok in [
            "openai.gpt-oss-120b",
            "mistral.mistral-large-3-675b-instruct",
            "deepseek.v3.1",
            "qwen.qwen3-32b-v1:0",
        ] {
            assert!(
                ModelId::parse(ok).is_ok() && ModelId::check(ok).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "gpt-4",
            "OpenAI.gpt",
            ".x.y",
            "a.b c",
            &format!("a.{}", "b".repeat(127)),
        ] {
            assert!(
                ModelId::parse(bad).is_err() && ModelId::check(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            ModelId::parse("openai.gpt-oss-20b").map(|m| m.provider().to_owned()),
            Ok("openai".into())
        );
    }

    #[test]
    fn subjects() {
        for ok in ["alice", "auth0|abc123", "alice@example.com", "1234567890"] {
            assert!(Subject::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"a".repeat(256)] {
            assert!(Subject::parse(bad).is_err(), "{bad}");
        }
    }
}
