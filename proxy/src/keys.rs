//! Scoped keys verified offline: the signature against the control plane's JWKS
//! (fetched once, again only for a `kid` it does not know), `iss`, `aud` and `exp`.
//! A key seen before costs one hash-map lookup.

use foldhash::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use strata_contract::{API_KEY_PREFIX, ApiKeyClaims};

/// Past this many cached keys the cache starts over (bounds memory under a flood of
/// distinct valid keys).
const MAX_CACHED_KEYS: usize = 100_000;
/// An unknown `kid` refetches the JWKS at most this often (a flood of forged `kid`s
/// must not become a flood of fetches).
const MIN_REFETCH: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not a strata key")]
    Malformed,
    #[error("the key is invalid: {0}")]
    Invalid(String),
    #[error("the key has expired")]
    Expired,
    #[error("the signing keys cannot be fetched: {0}")]
    Unavailable(String),
}

pub struct KeyVerifier {
    http: reqwest::Client,
    jwks_url: String,
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the JWKS was last fetched. Held across the fetch, so requests that arrive
    /// during it wait for its result instead of finding no keys.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Keys verified before, by their secret. Only a verified key is added, so the
    /// table's contents are not a client's choice; foldhash (seeded per process) costs
    /// a fraction of SipHash over a ~300-byte secret, on every request.
    verified: RwLock<HashMap<String, Arc<ApiKeyClaims>>>,
}

impl KeyVerifier {
    /// `control_plane`: e.g. `http://127.0.0.1:8080`; `issuer` and `audience` as the
    /// control plane signs them (`STRATA_KEY_ISSUER`, `STRATA_PROXY_AUDIENCE`).
    pub fn new(http: reqwest::Client, control_plane: &str, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        Self {
            http,
            jwks_url: format!(
                "{}/.well-known/jwks.json",
                control_plane.trim_end_matches('/')
            ),
            validation,
            keys: RwLock::new(HashMap::default()),
            last_fetch: tokio::sync::Mutex::new(None),
            verified: RwLock::new(HashMap::default()),
        }
    }

    /// How many keys are cached (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.verified.read().map(|m| m.len()).unwrap_or(0)
    }

    /// The claims of a valid key. `now` in Unix seconds.
    pub async fn verify(&self, secret: &str, now: i64) -> Result<Arc<ApiKeyClaims>, KeyError> {
        if let Some(claims) = self
            .verified
            .read()
            .ok()
            .and_then(|m| m.get(secret).cloned())
        {
            return if claims.exp > now {
                Ok(claims)
            } else {
                Err(KeyError::Expired)
            };
        }
        let jwt = secret
            .strip_prefix(API_KEY_PREFIX)
            .ok_or(KeyError::Malformed)?;
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| KeyError::Malformed)?;
        let kid = header.kid.ok_or(KeyError::Malformed)?;
        let key = match self.key(&kid) {
            Some(k) => k,
            None => {
                self.refetch().await?;
                match self.key(&kid) {
                    Some(k) => k,
                    None if self.keys.read().map(|m| m.is_empty()).unwrap_or(true) => {
                        return Err(KeyError::Unavailable("no signing keys fetched yet".into()));
                    }
                    None => return Err(KeyError::Invalid(format!("unknown signing key '{kid}'"))),
                }
            }
        };
        let data = jsonwebtoken::decode::<ApiKeyClaims>(jwt, &key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => KeyError::Expired,
                _ => KeyError::Invalid(e.to_string()),
            },
        )?;
        if data.claims.exp <= now {
            return Err(KeyError::Expired);
        }
        let claims = Arc::new(data.claims);
        if let Ok(mut cache) = self.verified.write() {
            if cache.len() >= MAX_CACHED_KEYS {
                cache.clear();
            }
            cache.insert(secret.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok().and_then(|m| m.get(kid).cloned())
    }

    async fn refetch(&self) -> Result<(), KeyError> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| KeyError::Unavailable(e.without_url().to_string()))?
            .json()
            .await
            .map_err(|e| KeyError::Unavailable(e.without_url().to_string()))?;
        let mut keys = HashMap::default();
        for jwk in &set.keys {
            if let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) {
                keys.insert(kid, key);
            }
        }
        if let Ok(mut current) = self.keys.write() {
            *current = keys;
        }
        Ok(())
    }
}
