//! Notifications: where they go (destinations), what they are about, and how each
//! delivery went.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DestinationKind, Environment};
use crate::FieldError;

/// The kinds of event strata tells people about.
pub const NOTIFICATION_KINDS: &[&str] = &[
    "budget.threshold",
    "budget.forecast",
    "key.expiring",
    "reconcile.failing",
    "drift.repaired",
    "test",
];

/// The body of `POST /api/v1/notification-destinations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDestination {
    /// Unique, 1 to 100 characters, e.g. `finance-alerts`.
    #[schema(example = "finance-alerts")]
    pub name: String,
    pub kind: DestinationKind,
    /// `https://…` (or `http://` for a receiver on a private network).
    #[schema(example = "https://hooks.example.com/strata")]
    pub url: String,
    /// Event kinds to send (`budget.threshold`); empty or absent: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only this environment's events; absent: every environment's.
    #[serde(default)]
    pub environment: Option<Environment>,
}

impl NewDestination {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "name",
                "must be 1 to 100 characters, no control characters",
            ));
        }
        if self.kind == DestinationKind::Email {
            let addresses: Vec<&str> = self
                .url
                .strip_prefix("mailto:")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .collect();
            if addresses
                .iter()
                .any(|a| a.parse::<lettre::Address>().is_err())
            {
                errors.push(FieldError::new(
                    "url",
                    "must be mailto: with one or more addresses, e.g. mailto:finance@example.com",
                ));
            }
        } else {
            match reqwest::Url::parse(&self.url) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {
                    if !u.username().is_empty() || u.password().is_some() {
                        errors.push(FieldError::new("url", "must not carry credentials"));
                    }
                }
                _ => errors.push(FieldError::new("url", "must be an http(s) URL with a host")),
            }
        }
        if self.url.len() > 2048 {
            errors.push(FieldError::new("url", "at most 2048 characters"));
        }
        for (i, event) in self.events.iter().enumerate() {
            if !NOTIFICATION_KINDS.contains(&event.as_str()) {
                errors.push(FieldError::new(
                    format!("events[{i}]"),
                    format!(
                        "unknown event '{event}'; known: {}",
                        NOTIFICATION_KINDS.join(", ")
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A destination as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Destination {
    pub id: Uuid,
    pub name: String,
    pub kind: DestinationKind,
    /// For webhooks and Slack, the scheme and host only (`https://hooks.slack.com/…`):
    /// the rest may be a token. For e-mail, the `mailto:` addresses.
    pub url: String,
    pub events: Vec<String>,
    pub environment: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last delivery's outcome: when, and its error if it failed.
    pub last_delivery_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The answer to a create: for a webhook, the signing secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedDestination {
    #[serde(flatten)]
    pub destination: Destination,
    /// `whsec_…`: verify `Strata-Signature` with it (HMAC-SHA256 of `{t}.{body}`).
    pub signing_secret: Option<String>,
}

/// One notification's delivery to one destination.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    pub notification_id: Uuid,
    pub kind: String,
    pub summary: String,
    /// `pending`, `delivered` or `failed` (attempts exhausted).
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}
