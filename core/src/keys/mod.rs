//! Signing scoped API keys: the Ed25519 keys that sign them (kept in the database,
//! private parts encrypted), the claims a key carries, and the JWKS the proxy
//! verifies them with.

mod encryption;
mod issuer;

pub use encryption::{KekError, KeyEncryptionKey, KeyShapeError, SealError};
pub use issuer::{ApiKeyIssuer, IssuerError, Jwk, Jwks, RetiredKey, Rotation, jwks};
pub use strata_contract::{API_KEY_PREFIX, ApiKeyClaims};
