//! Who is asking: the key verified offline, the request's body read within the limit,
//! and the refusals of the access decision in OpenAI's envelope.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::Utc;
use strata_contract::ApiKeyClaims;

use crate::access::Denial;
use crate::billing::Seen;
use crate::error::OpenAiError;
use crate::state::Proxy;
use crate::{KeyError, Policy};

impl Proxy {
    /// What every forwarded request starts with: the verified key (its project noted
    /// for the metrics), the current policy, and the body. The request's head is
    /// dropped once the key is read: its values are slices of the client connection's
    /// read buffer, which hyper replaces (8 KiB) while the request is in flight, so
    /// keeping the head would hold the old buffer for as long as a stream waits for its
    /// first token (8 MiB with 1,000 waiting, bench/proxy.sh). A body forwarded as it
    /// came is dropped by hyper once written to Mantle.
    pub(crate) async fn begin(
        &self,
        client: Request,
        seen: &mut Seen,
    ) -> Result<(Arc<ApiKeyClaims>, Arc<Policy>, Bytes), OpenAiError> {
        let (head, body) = client.into_parts();
        let claims = self.authenticate(&head.headers).await?;
        drop(head);
        seen.project = Some(claims.project);
        let policy = self.policy()?;
        let limit = self.settings.config.proxy_max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            OpenAiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "body_too_large",
                format!("The request body is larger than the proxy accepts ({limit} bytes)."),
            )
        })?;
        Ok((claims, policy, bytes))
    }

    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Arc<ApiKeyClaims>, OpenAiError> {
        // Anthropic's SDKs send the key as `x-api-key`, OpenAI's as a bearer token.
        let secret = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                OpenAiError::invalid_key(
                    "No API key given: send `Authorization: Bearer sk-strata-…` or `x-api-key: sk-strata-…` (the key from strata).",
                )
            })?;
        self.verifier
            .verify(secret, Utc::now().timestamp())
            .await
            .map_err(|e| match e {
                KeyError::Unavailable(_) => OpenAiError::unavailable(
                    "keys_unavailable",
                    "The proxy cannot fetch strata's signing keys yet; retry shortly.",
                ),
                KeyError::Expired => OpenAiError::invalid_key("This API key has expired."),
                KeyError::Malformed | KeyError::Invalid(_) => {
                    OpenAiError::invalid_key("Incorrect API key provided.")
                }
            })
    }
}

pub(crate) fn denial(d: Denial, model: Option<&str>) -> OpenAiError {
    match d {
        Denial::KeyRevoked => OpenAiError::invalid_key("This API key has been revoked."),
        // A valid signature for a project this replica's snapshot does not have yet: a
        // key made moments after its project. The SDKs retry a 503.
        Denial::UnknownProject => OpenAiError::unavailable(
            "project_not_ready",
            "This key's project has not reached the proxy yet; retry shortly.",
        ),
        Denial::ProjectArchived => OpenAiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "project_archived",
            "This key's project is archived.",
        ),
        Denial::ModelNotAllowed => OpenAiError::model_not_found(model.unwrap_or_default()),
    }
}
