//! Tokens from an external OIDC identity provider, verified against its JWKS. Keys
//! are cached; an unknown `kid` triggers a refetch (at most every 10 s), so the
//! provider can rotate keys without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
const KEYS_TTL: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
    /// Why the last fetch failed; kept until one succeeds, so the requests that wait
    /// out the refetch interval learn of it too.
    unavailable: Option<OidcError>,
}

/// Why an identity provider's token was not accepted. The message is the 401's
/// reason (or the 503's, when the provider's keys cannot be had) and never echoes the
/// token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("the token header has no 'kid'")]
    NoKid,
    #[error("no key '{0}' in the identity provider's JWKS")]
    UnknownKey(String),
    #[error("fetching the identity provider's JWKS failed: {0}")]
    JwksUnreachable(String),
    #[error("the identity provider's JWKS is not valid: {0}")]
    JwksInvalid(String),
    #[error("the token was refused: {0}")]
    Refused(jsonwebtoken::errors::Error),
    #[error("the token has no string 'sub'")]
    NoSubject,
}

impl OidcError {
    /// The provider, not the token, is at fault: the caller may retry as it is.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::JwksUnreachable(_) | Self::JwksInvalid(_))
    }
}

pub struct OidcVerifier {
    issuer: String,
    audience: String,
    jwks_url: String,
    groups_claim: String,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .finish()
    }
}

/// Subject and groups of a verified OIDC token.
#[derive(Debug, Clone)]
pub struct OidcIdentity {
    pub subject: String,
    pub groups: Vec<String>,
    pub exp: i64,
}

fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        return Algorithm::try_from(alg).ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
            Some(Algorithm::ES384)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

impl OidcVerifier {
    pub fn new(issuer: String, audience: String, jwks_url: String, groups_claim: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            issuer,
            audience,
            jwks_url,
            groups_claim,
            http,
            cache: RwLock::new(KeyCache::default()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn refresh(&self) -> Result<(), OidcError> {
        let mut cache = self.cache.write().await;
        if cache
            .fetched_at
            .is_some_and(|t| t.elapsed() < REFETCH_MIN_INTERVAL)
        {
            return cache.unavailable.clone().map_or(Ok(()), Err);
        }
        cache.fetched_at = Some(Instant::now());
        let fetched = async {
            self.http
                .get(&self.jwks_url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| OidcError::JwksUnreachable(e.to_string()))?
                .json::<JwkSet>()
                .await
                .map_err(|e| OidcError::JwksInvalid(e.to_string()))
        };
        let set = match fetched.await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(oidc.jwks_url = %self.jwks_url, error.cause = %e, "cannot fetch identity provider keys");
                cache.unavailable = Some(e.clone());
                return Err(e);
            }
        };
        cache.unavailable = None;
        cache.keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let alg = algorithm_of(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, (key, alg)))
            })
            .collect();
        tracing::info!(oidc.jwks_url = %self.jwks_url, oidc.keys = cache.keys.len(), "fetched identity provider keys");
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<Option<(DecodingKey, Algorithm)>, OidcError> {
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < KEYS_TTL);
            if let Some(k) = cache.keys.get(kid).filter(|_| fresh) {
                return Ok(Some(k.clone()));
            }
        }
        self.refresh().await?;
        Ok(self.cache.read().await.keys.get(kid).cloned())
    }

    /// Verifies the token; the error says why it was refused (never echoing it).
    pub async fn verify(&self, token: &str, kid: Option<&str>) -> Result<OidcIdentity, OidcError> {
        let kid = kid.ok_or(OidcError::NoKid)?;
        let (key, alg) = self
            .key(kid)
            .await?
            .ok_or_else(|| OidcError::UnknownKey(kid.to_owned()))?;
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        let claims = jsonwebtoken::decode::<HashMap<String, Value>>(token, &key, &v)
            .map_err(OidcError::Refused)?
            .claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(OidcError::NoSubject)?
            .to_owned();
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let groups = match claims.get(&self.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s
                .split([' ', ','])
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(OidcIdentity {
            subject,
            groups,
            exp,
        })
    }
}
