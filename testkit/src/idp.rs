//! A fake OIDC identity provider: an Ed25519 key, its JWKS served on a loopback port,
//! and tokens with any subject, groups, issuer and audience.

use std::net::SocketAddr;

use axum::Json;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub struct FakeIdp {
    pub issuer: String,
    pub jwks_url: String,
    pub kid: String,
    key: EncodingKey,
}

impl FakeIdp {
    pub async fn start() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap_or_else(|e| panic!("{e}"));
        let signing = SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().unwrap_or_else(|e| panic!("{e}"));
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let kid = "idp-key-1".to_owned();
        let jwks =
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"}]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr: SocketAddr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let router = axum::Router::new().route(
            "/jwks.json",
            get(move || {
                let j = jwks.clone();
                async move { Json(j) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            issuer: format!("http://{addr}/"),
            jwks_url: format!("http://{addr}/jwks.json"),
            kid,
            key: EncodingKey::from_ed_der(der.as_bytes()),
        }
    }

    /// A token with the given claims merged over sensible defaults.
    pub fn token(&self, claims: Value) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut all = json!({"iss": self.issuer, "aud": "strata-api", "sub": "someone", "iat": now, "exp": now + 600});
        if let (Some(base), Some(extra)) = (all.as_object_mut(), claims.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &all, &self.key).unwrap_or_else(|e| panic!("{e}"))
    }
}
