//! The errors services return. The HTTP layer maps each variant to one status and
//! one error code; nothing here carries SQL text or secrets to the client.

pub use strata_contract::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the request is invalid: {}", fields(.0))]
    Validation(Vec<FieldError>),
    #[error("{kind} '{id}' was not found")]
    NotFound { kind: &'static str, id: String },
    /// A rule about the current state forbids the change (duplicate name, archived project).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(
        "the resource changed since it was read (expected version {expected}, current {current})"
    )]
    PreconditionFailed { expected: String, current: String },
    #[error("the Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] sea_orm::DbErr),
    /// The identity provider's keys cannot be fetched, so its tokens cannot be checked.
    #[error("the identity provider is unavailable: {0}")]
    IdentityProviderUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {err}"))
    }
}

/// A stored secret that cannot be opened is strata's fault, never the caller's.
impl From<crate::keys::SealError> for CoreError {
    fn from(err: crate::keys::SealError) -> Self {
        CoreError::Internal(err.to_string())
    }
}

impl From<sea_orm::DbErr> for CoreError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::store::is_unavailable(&err) {
            CoreError::Unavailable(err)
        } else {
            CoreError::Internal(format!("database error: {err}"))
        }
    }
}

/// `field: message; …` — a validation error's details, for terminals and logs.
fn fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
