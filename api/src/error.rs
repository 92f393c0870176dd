//! The control plane's one error envelope:
//! `{"error": {"code": "…", "message": "…", "details": …}}` with the matching status.
//! Internal errors are logged here, once, with their cause; the client gets only a
//! generic message and the request id.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use strata_core::{CoreError, FieldError};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `project_not_found`, `validation_failed`.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
    /// For `validation_failed`: one entry per invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    pub details: Option<Value>,
}

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Boxed: keeps `Result<_, ApiError>` small.
    pub details: Option<Box<Value>>,
    /// Logged, never sent.
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            cause: None,
        }
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("{kind}_not_found"),
            format!("{kind} '{id}' was not found"),
        )
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let summary: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed".into(),
            message: format!("the request has invalid fields: {}", summary.join("; ")),
            details: serde_json::to_value(errors).ok().map(Box::new),
            cause: None,
        }
    }

    pub fn forbidden(action: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your roles do not allow '{action}' here"),
        )
    }
}

impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> Self {
        match err {
            CoreError::Validation(errors) => Self::validation(errors),
            CoreError::NotFound { kind, id } => Self::not_found(kind, &id),
            CoreError::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            e @ CoreError::PreconditionFailed { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!("{e}; GET it again and retry with the new ETag in If-Match"),
            ),
            e @ CoreError::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!("{e}; use a new key for a different request"),
            ),
            CoreError::Unauthenticated(m) => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", m)
            }
            CoreError::Unavailable(e) => Self {
                cause: Some(e.to_string()),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                )
            },
            CoreError::IdentityProviderUnavailable(cause) => Self {
                cause: Some(cause),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "identity_provider_unavailable",
                    "the identity provider's keys cannot be fetched, so the token cannot be \
                     checked; retry shortly",
                )
            },
            CoreError::Internal(cause) => Self {
                cause: Some(cause),
                ..Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error; the request id identifies it in the server logs",
                )
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match (&self.cause, self.status) {
            (Some(cause), StatusCode::SERVICE_UNAVAILABLE) => {
                tracing::warn!(error.cause = %cause, "database unavailable")
            }
            (Some(cause), s) if s.is_server_error() => {
                tracing::error!(error.cause = %cause, error.code = %self.code, "request failed")
            }
            _ => {}
        }
        let status = self.status;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.details.map(|d| *d),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
