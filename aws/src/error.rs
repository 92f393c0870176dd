use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What the caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing does not exist (may also be IAM's eventual consistency right after
    /// a create).
    NotFound,
    /// It exists already (`EntityAlreadyExists`).
    AlreadyExists,
    /// Worth retrying later: throttling, `ConcurrentModification`, 5xx, timeouts,
    /// connection failures.
    Retryable,
    /// No credentials, or not allowed.
    Denied,
    /// The request was wrong (a bug or bad input); retrying will not help.
    Invalid,
}

/// A failed AWS call, with the service's error code and message (never credentials).
#[derive(Debug, Clone, thiserror::Error)]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub kind: ErrorKind,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.operation)?;
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl AwsError {
    pub fn new(
        service: &'static str,
        operation: &'static str,
        kind: ErrorKind,
        code: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            service,
            operation,
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// Classifies an SDK error by its error code and HTTP status.
    pub(crate) fn from_sdk<E, R>(
        service: &'static str,
        operation: &'static str,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + HasStatus,
    {
        match &err {
            SdkError::ServiceError(ctx) => {
                let code = ctx.err().code().map(str::to_owned);
                let status = ctx.raw().status();
                let message = ctx
                    .err()
                    .message()
                    .map_or_else(|| format!("HTTP {status} without a message"), str::to_owned);
                let kind = classify(code.as_deref(), status);
                Self::new(service, operation, kind, code, message)
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Self::new(
                service,
                operation,
                ErrorKind::Retryable,
                None,
                source_chain(&err),
            ),
            SdkError::ResponseError(ctx) => {
                let status = ctx.raw().status();
                let kind = if status >= 500 || status == 429 {
                    ErrorKind::Retryable
                } else {
                    ErrorKind::Invalid
                };
                Self::new(service, operation, kind, None, source_chain(&err))
            }
            _ => {
                let message = source_chain(&err);
                let kind = if message.contains("credentials") {
                    ErrorKind::Denied
                } else {
                    ErrorKind::Invalid
                };
                Self::new(service, operation, kind, None, message)
            }
        }
    }
}

/// The HTTP status of a raw response.
pub(crate) trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

pub(crate) fn classify(code: Option<&str>, status: u16) -> ErrorKind {
    match code.unwrap_or_default() {
        "NoSuchEntity" | "ResourceNotFoundException" | "NotFound" => ErrorKind::NotFound,
        "EntityAlreadyExists" => ErrorKind::AlreadyExists,
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "ConcurrentModification"
        | "ServiceFailure"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "LimitExceeded" => ErrorKind::Retryable,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch" => ErrorKind::Denied,
        _ if status >= 500 || status == 429 => ErrorKind::Retryable,
        _ if status == 404 => ErrorKind::NotFound,
        _ if status == 401 || status == 403 => ErrorKind::Denied,
        _ => ErrorKind::Invalid,
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(Some("ConcurrentModification"), 409),
            ErrorKind::Retryable
        );
        assert_eq!(classify(Some("Throttling"), 400), ErrorKind::Retryable);
        assert_eq!(classify(Some("NoSuchEntity"), 404), ErrorKind::NotFound);
        assert_eq!(classify(None, 503), ErrorKind::Retryable);
        assert_eq!(
            classify(Some("MalformedPolicyDocument"), 400),
            ErrorKind::Invalid
        );
        assert_eq!(classify(Some("AccessDenied"), 403), ErrorKind::Denied);
    }
}
