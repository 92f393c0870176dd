use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::RateLimits;

/// Every secret starts with this, so scanners and people can tell a strata key.
pub const API_KEY_PREFIX: &str = "sk-strata-";

/// What a key's JWT says. The proxy checks the signature, `exp` and `aud`, then the
/// policy snapshot (revocation, project state, current models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyClaims {
    pub iss: String,
    pub aud: String,
    /// The key id.
    pub sub: Uuid,
    pub project: Uuid,
    pub environment: String,
    /// The key's model scope; absent: every model the project allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// The key's own requests / tokens per minute; absent: the project's limits only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    pub iat: i64,
    pub exp: i64,
}
