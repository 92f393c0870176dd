//! Turns a bearer token into a [`Principal`]: picks the issuer from the token's
//! `iss`, verifies with that issuer's keys, maps groups to roles, and caches the
//! result until the token expires (verifying a signature on every request would cost
//! more than the request itself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{LocalIssuer, OidcVerifier, Principal, RbacPolicy};
use crate::CoreError;
use crate::clock::Clock;

const CACHE_CAPACITY: usize = 10_000;

#[derive(Deserialize)]
struct UnverifiedIss {
    iss: Option<String>,
}

pub struct TokenVerifier {
    local: Option<Arc<LocalIssuer>>,
    oidc: Option<OidcVerifier>,
    rbac: Arc<RbacPolicy>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<[u8; 32], (Principal, i64)>>,
}

fn refused(why: &str) -> CoreError {
    CoreError::Unauthenticated(format!("invalid bearer token: {why}"))
}

impl TokenVerifier {
    pub fn new(
        local: Option<Arc<LocalIssuer>>,
        oidc: Option<OidcVerifier>,
        rbac: Arc<RbacPolicy>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            local,
            oidc,
            rbac,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn rbac(&self) -> &RbacPolicy {
        &self.rbac
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, CoreError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = self.clock.now().timestamp();
        if let Ok(cache) = self.cache.lock()
            && let Some((principal, exp)) = cache.get(&digest)
            && *exp > now
        {
            return Ok(principal.clone());
        }
        let (principal, exp) = self.verify_uncached(token).await?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, (_, exp)| *exp > now);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(digest, (principal.clone(), exp));
        }
        Ok(principal)
    }

    async fn verify_uncached(&self, token: &str) -> Result<(Principal, i64), CoreError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused("not a JWT"))?;
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<UnverifiedIss>(token)
            .map_err(|_| refused("not a JWT"))?
            .iss
            .ok_or_else(|| refused("no 'iss' claim"))?;
        if let Some(local) = self.local.as_ref().filter(|l| l.issuer() == iss) {
            let claims = local.verify(token).map_err(|e| refused(&e.to_string()))?;
            let roles = claims
                .roles
                .into_iter()
                .filter(|r| self.rbac.has_role(r))
                .collect();
            return Ok((
                Principal {
                    subject: claims.sub,
                    roles,
                },
                claims.exp,
            ));
        }
        if let Some(oidc) = self.oidc.as_ref().filter(|o| o.issuer() == iss) {
            let id = oidc
                .verify(token, header.kid.as_deref())
                .await
                .map_err(|e| {
                    if e.is_unavailable() {
                        CoreError::IdentityProviderUnavailable(e.to_string())
                    } else {
                        refused(&e.to_string())
                    }
                })?;
            let roles = self
                .rbac
                .roles_for_groups(id.groups.iter().map(String::as_str));
            return Ok((
                Principal {
                    subject: id.subject,
                    roles,
                },
                id.exp,
            ));
        }
        Err(refused("unknown issuer"))
    }
}
