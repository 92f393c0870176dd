//! How the proxy authenticates a request to Mantle for one project: SigV4 with
//! credentials from assuming the project's IAM role (so AWS itself enforces the
//! project's model list), a short-term Bedrock API key minted from those credentials
//! (the same enforcement, for a bearer token), or one configured long-term Bedrock API
//! key for every project (weaker: AWS then applies that key's identity, not the
//! project's role).

use foldhash::HashMap;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use tokio::sync::Mutex as AsyncMutex;

use crate::error::AwsError;
use crate::sigv4::{MANTLE_SERVICE, SigningKeys, sign_headers, sign_json_post};
use crate::{AwsCalls, ErrorKind};

/// Assumed-role credentials are used until this close to their expiry.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
const SESSION_SECONDS: i32 = 3600;

/// One request to sign. `headers` are the headers that will be sent and signed
/// (lower-case names); `body` is empty for a GET or DELETE.
pub struct UpstreamRequest<'a> {
    /// `POST`, `GET` or `DELETE`.
    pub method: &'a str,
    pub role_arn: Option<&'a str>,
    pub region: &'a str,
    pub url: &'a reqwest::Url,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Header name and value.
pub type AuthHeaders = Vec<(Cow<'static, str>, String)>;

/// The authentication headers for a request to Mantle.
#[async_trait]
pub trait UpstreamAuth: Send + Sync {
    async fn headers(&self, request: &UpstreamRequest<'_>) -> Result<AuthHeaders, AwsError>;
}

/// A Bedrock API key, sent as a bearer token; the same for every project.
pub struct BedrockApiKey(String);

impl BedrockApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

#[async_trait]
impl UpstreamAuth for BedrockApiKey {
    async fn headers(&self, _request: &UpstreamRequest<'_>) -> Result<AuthHeaders, AwsError> {
        Ok(vec![("authorization".into(), format!("Bearer {}", self.0))])
    }
}

type RoleSlot = Arc<AsyncMutex<Option<Credentials>>>;

/// SigV4 with credentials from STS AssumeRole on the project's role, cached per role
/// until shortly before they expire. Concurrent requests for one role share one
/// AssumeRole call.
pub struct AssumedRoles {
    sts: aws_sdk_sts::Client,
    calls: AwsCalls,
    session_name: String,
    /// The current credentials per role, read without waiting.
    fresh: RwLock<HashMap<String, Credentials>>,
    /// One refresh per role at a time.
    roles: Mutex<HashMap<String, RoleSlot>>,
    signing_keys: SigningKeys,
}

impl AssumedRoles {
    pub fn new(config: &aws_config::SdkConfig, calls: AwsCalls, session_name: &str) -> Self {
        Self {
            sts: aws_sdk_sts::Client::new(config),
            calls,
            session_name: session_name.to_owned(),
            fresh: RwLock::new(HashMap::default()),
            roles: Mutex::new(HashMap::default()),
            signing_keys: SigningKeys::default(),
        }
    }

    fn fresh(credentials: &Credentials) -> bool {
        credentials.expiry().is_none_or(|expiry| {
            expiry
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
        })
    }

    /// Credentials for `role_arn`, from the cache or a new AssumeRole.
    pub async fn credentials(&self, role_arn: &str) -> Result<Credentials, AwsError> {
        // Fast path, taken by nearly every request: fresh credentials, no await.
        if let Some(credentials) = self
            .fresh
            .read()
            .ok()
            .and_then(|m| m.get(role_arn).filter(|c| Self::fresh(c)).cloned())
        {
            return Ok(credentials);
        }
        let slot = {
            let mut roles = self
                .roles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            roles.entry(role_arn.to_owned()).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some(credentials) = held.as_ref().filter(|c| Self::fresh(c)) {
            return Ok(credentials.clone());
        }
        let call = async {
            let out = self
                .sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(&self.session_name)
                .duration_seconds(SESSION_SECONDS)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("sts", "AssumeRole", e))?;
            let c = out.credentials().ok_or_else(|| {
                AwsError::new(
                    "sts",
                    "AssumeRole",
                    ErrorKind::Invalid,
                    None,
                    "no credentials in the response",
                )
            })?;
            let expiry = SystemTime::try_from(*c.expiration()).ok();
            Ok(Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                expiry,
                "strata-assume-role",
            ))
        };
        // Boxed: the SDK's call is a future of ~13 KB that would otherwise sit inline
        // in every request's signing future (and in each of the requests waiting
        // above for the one refresh), a thousand cold streams holding 13 MB.
        let credentials = self
            .calls
            .track("sts", "AssumeRole", Box::pin(call))
            .await?;
        *held = Some(credentials.clone());
        if let Ok(mut fresh) = self.fresh.write() {
            fresh.insert(role_arn.to_owned(), credentials.clone());
        }
        Ok(credentials)
    }
}

#[async_trait]
impl UpstreamAuth for AssumedRoles {
    async fn headers(&self, request: &UpstreamRequest<'_>) -> Result<AuthHeaders, AwsError> {
        let role = request.role_arn.ok_or_else(no_role)?;
        let credentials = self.credentials(role).await?;
        if request.method == "POST"
            && let Some(signed) = sign_json_post(
                &self.signing_keys,
                &credentials,
                request.region,
                request.url,
                request.headers,
                request.body,
            )
        {
            return Ok(signed.into_iter().map(|(n, v)| (n.into(), v)).collect());
        }
        sign_headers(
            &credentials,
            request.region,
            request.method,
            request.url.as_str(),
            request.headers,
            request.body,
        )
        .map(|signed| signed.into_iter().map(|(n, v)| (n.into(), v)).collect())
        .map_err(|e| AwsError::new(MANTLE_SERVICE, "Sign", ErrorKind::Invalid, None, e))
    }
}

/// A short-term Bedrock API key per project role and region, minted from the role's
/// assumed credentials and sent as a bearer token, so AWS still applies each project's
/// policy. A key lives as long as the credentials that signed it (at most 12 h) and a
/// new one is minted once it is within five minutes of expiry.
pub struct ShortTermApiKeys {
    roles: AssumedRoles,
    /// role → region → the key and what it was minted from (looked up by `&str`, so a
    /// request with a valid key allocates nothing to find it).
    keys: RwLock<HashMap<String, HashMap<String, MintedKey>>>,
}

#[derive(Clone)]
struct MintedKey {
    access_key: String,
    header: String,
    expires: SystemTime,
}

impl ShortTermApiKeys {
    pub fn new(config: &aws_config::SdkConfig, calls: AwsCalls, session_name: &str) -> Self {
        Self {
            roles: AssumedRoles::new(config, calls, session_name),
            keys: RwLock::new(HashMap::default()),
        }
    }

    /// The `Authorization` value for the role in the region.
    async fn key(&self, role_arn: &str, region: &str) -> Result<String, AwsError> {
        let credentials = self.roles.credentials(role_arn).await?;
        let now = SystemTime::now();
        let cached = self.keys.read().ok().and_then(|keys| {
            keys.get(role_arn)?
                .get(region)
                .filter(|k| {
                    k.access_key == credentials.access_key_id()
                        && k.expires
                            .duration_since(now)
                            .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
                })
                .map(|k| k.header.clone())
        });
        if let Some(header) = cached {
            return Ok(header);
        }
        let lifetime = credentials
            .expiry()
            .and_then(|e| e.duration_since(now).ok())
            .unwrap_or(crate::api_keys::MAX_LIFETIME)
            .min(crate::api_keys::MAX_LIFETIME);
        let key =
            crate::api_keys::short_term_key(&credentials, region, lifetime, now).map_err(|e| {
                AwsError::new(
                    MANTLE_SERVICE,
                    "MintApiKey",
                    ErrorKind::Invalid,
                    None,
                    e.to_string(),
                )
            })?;
        let minted = MintedKey {
            access_key: credentials.access_key_id().to_owned(),
            header: format!("Bearer {key}"),
            expires: now + lifetime,
        };
        if let Ok(mut keys) = self.keys.write() {
            keys.entry(role_arn.to_owned())
                .or_default()
                .insert(region.to_owned(), minted.clone());
        }
        Ok(minted.header)
    }
}

#[async_trait]
impl UpstreamAuth for ShortTermApiKeys {
    async fn headers(&self, request: &UpstreamRequest<'_>) -> Result<AuthHeaders, AwsError> {
        let role = request.role_arn.ok_or_else(no_role)?;
        let header = self.key(role, request.region).await?;
        Ok(vec![("authorization".into(), header)])
    }
}

fn no_role() -> AwsError {
    AwsError::new(
        "sts",
        "AssumeRole",
        ErrorKind::NotFound,
        None,
        "the project has no IAM role yet (not reconciled)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a request holds while it waits for credentials (or signs with cached
    /// ones) stays small: the AssumeRole call is boxed, paid only by the one request
    /// that makes it. (Inline, it made every request's future ~13 KB; a proxy starting
    /// under 1,000 concurrent streams held 13 MB of them, bench/proxy.sh.)
    #[test]
    fn a_request_signing_future_does_not_carry_the_assume_role_call() {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let roles = AssumedRoles::new(&config, AwsCalls::new(), "strata-test");
        let url =
            reqwest::Url::parse("https://bedrock-mantle.us-east-1.api.aws/v1/chat/completions")
                .unwrap_or_else(|e| panic!("{e}"));
        let request = UpstreamRequest {
            method: "POST",
            role_arn: Some("arn:aws:iam::123456789012:role/strata-test"),
            region: "us-east-1",
            url: &url,
            headers: &[("content-type", "application/json")],
            body: b"{}",
        };
        let signing = roles.headers(&request);
        let size = std::mem::size_of_val(&*signing);
        assert!(size < 1024, "the signing future is {size} bytes");
    }
}
