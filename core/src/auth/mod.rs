//! Who is calling and what they may do: bearer-token verification (strata's own
//! issuer and an external OIDC provider) and the RBAC table from `policies/`.

mod local;
mod oidc;
mod rbac;
mod verifier;

pub use local::{LocalClaims, LocalIssuer};
pub use oidc::{OidcError, OidcVerifier};
pub use rbac::{Action, Decision, ListScope, RbacError, RbacPolicy};
pub use verifier::TokenVerifier;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    /// Global roles known to the RBAC table (unknown ones are dropped at verification).
    pub roles: Vec<String>,
}

/// The caller of a mutation, as recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub request_id: Option<String>,
}
