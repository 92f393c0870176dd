use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
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
                credentials_failure(std::error::Error::source(&err))
                    .unwrap_or(ErrorKind::Retryable),
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
            _ => Self::new(
                service,
                operation,
                credentials_failure(std::error::Error::source(&err)).unwrap_or(ErrorKind::Invalid),
                None,
                source_chain(&err),
            ),
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

/// How a failure to load credentials, anywhere in the error's causes, is classed:
/// none or misconfigured credentials are a denial no retry fixes; a provider that
/// timed out or failed (IMDS, STS) may answer next time.
fn credentials_failure(cause: Option<&(dyn std::error::Error + 'static)>) -> Option<ErrorKind> {
    std::iter::successors(cause, |e| e.source())
        .find_map(|e| e.downcast_ref::<CredentialsError>())
        .map(|e| match e {
            CredentialsError::CredentialsNotLoaded(_)
            | CredentialsError::InvalidConfiguration(_) => ErrorKind::Denied,
            _ => ErrorKind::Retryable,
        })
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
