//! Short-term Amazon Bedrock API keys, as AWS's token generators make them: a SigV4
//! presigned `GET https://bedrock.amazonaws.com/?Action=CallWithBearerToken` (service
//! `bedrock`, one region, at most 12 hours), without its scheme, with `&Version=1`,
//! base64-encoded behind `bedrock-api-key-`. Sent as `Authorization: Bearer …`, it acts
//! with the permissions of the credentials that presigned it (checked by AWS under
//! `bedrock-mantle:CallWithBearerToken`, `BearerTokenType` `SHORT_TERM`), and stops
//! working when they expire.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;

/// The longest a short-term key may live.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const PRESIGN_URL: &str = "https://bedrock.amazonaws.com/?Action=CallWithBearerToken";
const PREFIX: &str = "bedrock-api-key-";

/// Why a short-term key could not be presigned; it carries SigV4's own error.
#[derive(Debug, thiserror::Error)]
#[error("cannot presign a short-term Bedrock API key: {0}")]
pub struct PresignError(Box<dyn std::error::Error + Send + Sync>);

impl PresignError {
    fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(cause))
    }
}

/// A short-term key for `region`, valid from `now` for `lifetime` (capped at 12 h).
pub fn short_term_key(
    credentials: &Credentials,
    region: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<String, PresignError> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(lifetime.min(MAX_LIFETIME));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(now)
        .settings(settings)
        .build()
        .map_err(PresignError::new)?
        .into();
    let signable = SignableRequest::new(
        "GET",
        PRESIGN_URL,
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(PresignError::new)?;
    let (instructions, _) = sign(signable, &params)
        .map_err(PresignError::new)?
        .into_parts();
    let mut url = reqwest::Url::parse(PRESIGN_URL).map_err(PresignError::new)?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in instructions.params() {
            query.append_pair(name, value);
        }
    }
    let presigned = url.as_str().trim_start_matches("https://");
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(format!("{presigned}&Version=1"))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(key: &str) -> String {
        let encoded = key.strip_prefix(PREFIX).unwrap_or_else(|| panic!("{key}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_key_is_a_presigned_call_with_bearer_token_for_one_region() {
        let credentials =
            Credentials::new("ASIAEXAMPLE", "secret", Some("token".into()), None, "t");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let key = short_term_key(&credentials, "eu-west-1", Duration::from_secs(3000), now)
            .unwrap_or_else(|e| panic!("{e}"));
        let url = decode(&key);
        assert!(
            url.starts_with("bedrock.amazonaws.com/?Action=CallWithBearerToken&"),
            "{url}"
        );
        assert!(url.ends_with("&Version=1"), "{url}");
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=ASIAEXAMPLE%2F20251124%2Feu-west-1%2Fbedrock%2Faws4_request",
            "X-Amz-Expires=3000",
            "X-Amz-Security-Token=token",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        // Never longer than AWS allows.
        let long = short_term_key(&credentials, "eu-west-1", Duration::from_secs(90_000), now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(decode(&long).contains("X-Amz-Expires=43200"));
    }
}
