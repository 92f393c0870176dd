//! Scoped API keys: what a developer asks for and what the API shows of a key. The
//! secret itself exists only in the response that creates it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::project::MAX_ALLOWED_MODELS;
use super::{ModelId, RateLimits};
use crate::FieldError;

pub const MAX_KEY_NAME: usize = 100;
/// Shorter keys are a mistake more often than a wish.
pub const MIN_KEY_LIFETIME_SECS: u64 = 60;

/// The body of `POST /api/v1/projects/{id}/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// A label for people, e.g. the workload that uses the key.
    #[schema(example = "checkout-worker", min_length = 1, max_length = 100)]
    pub name: String,
    /// A subset of the project's allowed models. Omitted: every model the project
    /// allows, now and after later changes.
    #[serde(default)]
    #[schema(example = json!(["openai.gpt-oss-120b"]), min_items = 1, max_items = 100)]
    pub models: Option<Vec<String>>,
    /// Lifetime in seconds (at least 60), capped by the environment's maximum.
    /// Omitted: that maximum.
    #[serde(default)]
    #[schema(example = 2_592_000, minimum = 60)]
    pub expires_in: Option<u64>,
    /// The key's own requests / tokens per minute, enforced by the proxy together with
    /// the project's (the tighter wins). Omitted: only the project's limits apply.
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
}

/// A validated [`NewApiKey`], before the project's rules are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyDraft {
    pub name: String,
    pub models: Option<Vec<ModelId>>,
    pub expires_in: Option<u64>,
    pub rate_limits: RateLimits,
}

impl NewApiKey {
    pub fn validate(&self) -> Result<ApiKeyDraft, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_KEY_NAME {
            errors.push(FieldError::new(
                "name",
                format!("must be 1 to {MAX_KEY_NAME} characters"),
            ));
        } else if name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "name",
                "must not contain control characters",
            ));
        }
        let models = self.models.as_ref().map(|list| {
            if list.is_empty() || list.len() > MAX_ALLOWED_MODELS {
                errors.push(FieldError::new(
                    "models",
                    format!(
                        "must name 1 to {MAX_ALLOWED_MODELS} models, or be omitted for all the project's models"
                    ),
                ));
            }
            let mut out: Vec<ModelId> = Vec::new();
            for (i, raw) in list.iter().enumerate() {
                match ModelId::parse(raw) {
                    Ok(m) if !out.contains(&m) => out.push(m),
                    Ok(_) => {}
                    Err(e) => errors.push(FieldError::new(format!("models[{i}]"), e)),
                }
            }
            out
        });
        if let Some(secs) = self.expires_in
            && secs < MIN_KEY_LIFETIME_SECS
        {
            errors.push(FieldError::new(
                "expires_in",
                format!("must be at least {MIN_KEY_LIFETIME_SECS} seconds"),
            ));
        }
        let rate_limits = self.rate_limits.unwrap_or_default();
        rate_limits.validate(&mut errors);
        if errors.is_empty() {
            Ok(ApiKeyDraft {
                name: name.to_owned(),
                models,
                expires_in: self.expires_in,
                rate_limits,
            })
        } else {
            Err(errors)
        }
    }
}

/// Whether a key still works (before the proxy's own checks of the project).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

/// A key as the API shows it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    /// Subject of the caller that created the key.
    pub owner: String,
    /// The models the key may use; `null`: every model the project allows.
    #[schema(value_type = Option<Vec<String>>)]
    pub models: Option<Vec<ModelId>>,
    pub status: KeyStatus,
    /// The key's own limits; `null` fields: only the project's limits apply.
    pub rate_limits: RateLimits,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    /// Last time the proxy saw the key (to the minute), if ever.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The answer to a create: the key and, this once, its secret.
#[derive(Clone, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The API key (`sk-strata-…`). Shown only in this response; strata does not
    /// keep it. Use it as the OpenAI SDK's `api_key` with strata's proxy as `base_url`.
    pub secret: String,
}

/// What a key request made: a new key (with its secret), or, for a form sent again,
/// the key its first sending made.
#[derive(Debug, Clone)]
pub enum KeyCreation {
    Created(CreatedApiKey),
    Repeated(ApiKey),
}

/// `Debug` leaves the secret out, so a key logged by mistake does not leak.
impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, models: Option<Vec<&str>>, expires_in: Option<u64>) -> NewApiKey {
        NewApiKey {
            name: name.into(),
            models: models.map(|m| m.into_iter().map(String::from).collect()),
            expires_in,
            rate_limits: None,
        }
    }

    #[test]
    fn validates_name_models_and_lifetime() {
        let ok = input(" worker ", Some(vec!["openai.a", "openai.a"]), Some(60))
            .validate()
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.name, "worker");
        assert_eq!(ok.models.map(|m| m.len()), Some(1), "duplicates dropped");
        let bad = input("", Some(vec![]), Some(59))
            .validate()
            .err()
            .unwrap_or_default();
        let fields: Vec<_> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "models", "expires_in"]);
        let bad = input("a\u{7}b", Some(vec!["NotAModel"]), None)
            .validate()
            .err()
            .unwrap_or_default();
        let fields: Vec<_> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "models[0]"]);
    }
}
