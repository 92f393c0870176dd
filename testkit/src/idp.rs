//! A fake OIDC identity provider: an Ed25519 key, its JWKS served on a loopback port,
//! and tokens with any subject, groups, issuer and audience; also an authorization
//! endpoint that signs in whoever `sign_in_as` names, a token endpoint that trades its
//! codes (PKCE checked) for an ID token, and the device authorization grant (RFC 8628:
//! a discovery document naming its endpoint; codes approved or denied by the test).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{Form, Query};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::Digest;

pub struct FakeIdp {
    pub issuer: String,
    pub device_url: String,
    pub jwks_url: String,
    pub authorization_url: String,
    pub token_url: String,
    pub kid: String,
    key: EncodingKey,
    flows: Arc<Mutex<Flows>>,
}

/// Who the authorization endpoint signs in, and the codes it has handed out.
#[derive(Default)]
struct Flows {
    user: Option<(String, Vec<String>)>,
    /// code → (code challenge, redirect URI, client id, ID token to give).
    codes: HashMap<String, (String, String, String, String)>,
    issued: u64,
    /// device code → the device sign-in it started.
    devices: HashMap<String, DeviceSignIn>,
    /// How often the token endpoint was asked about a device code.
    device_polls: u64,
    /// refresh token → (client id, subject, groups); each works once (rotated).
    refresh_tokens: HashMap<String, (String, String, Vec<String>)>,
    refreshes: u64,
    /// Lifetime of the tokens the device grant and refreshes issue (600 s unless set).
    token_lifetime: Option<i64>,
    /// The discovery document leaves the device authorization endpoint out.
    no_device_flow: bool,
}

struct DeviceSignIn {
    user_code: String,
    client_id: String,
    /// `None` while pending; then the user's (subject, groups), or `Err` when denied.
    decision: Option<Result<(String, Vec<String>), ()>>,
}

#[derive(serde::Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    code_challenge_method: String,
}

#[derive(serde::Deserialize)]
struct TokenForm {
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    client_id: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    device_code: String,
    #[serde(default)]
    refresh_token: String,
}

#[derive(serde::Deserialize)]
struct DeviceForm {
    client_id: String,
}

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn signed(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap_or_else(|e| panic!("{e}"))
}

/// The token endpoint's answer to a device code: pending, denied, or the tokens
/// (an access token for strata's API, an ID token for the client).
fn device_token(
    flows: &mut Flows,
    form: &TokenForm,
    key: &EncodingKey,
    kid: &str,
    issuer: &str,
) -> axum::response::Response {
    let error = |code: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": code})),
        )
            .into_response()
    };
    flows.device_polls += 1;
    let Some(device) = flows.devices.get(&form.device_code) else {
        return error("invalid_grant");
    };
    if device.client_id != form.client_id {
        return error("invalid_client");
    }
    match &device.decision {
        None => error("authorization_pending"),
        Some(Err(())) => {
            flows.devices.remove(&form.device_code);
            error("access_denied")
        }
        Some(Ok((subject, groups))) => {
            let (subject, groups) = (subject.clone(), groups.clone());
            flows.devices.remove(&form.device_code);
            Json(tokens(
                flows,
                &form.client_id,
                &subject,
                &groups,
                key,
                kid,
                issuer,
            ))
            .into_response()
        }
    }
}

/// An access token for strata's API, an ID token for the client, and a new refresh token.
fn tokens(
    flows: &mut Flows,
    client_id: &str,
    subject: &str,
    groups: &[String],
    key: &EncodingKey,
    kid: &str,
    issuer: &str,
) -> Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let lifetime = flows.token_lifetime.unwrap_or(600);
    let access = json!({"iss": issuer, "aud": "strata-api", "sub": subject,
        "groups": groups, "iat": now, "exp": now + lifetime});
    let id = json!({"iss": issuer, "aud": client_id, "sub": subject,
        "groups": groups, "iat": now, "exp": now + lifetime});
    flows.issued += 1;
    let refresh = format!("refresh-{}", flows.issued);
    flows.refresh_tokens.insert(
        refresh.clone(),
        (client_id.to_owned(), subject.to_owned(), groups.to_vec()),
    );
    json!({"access_token": signed(key, kid, &access), "id_token": signed(key, kid, &id),
        "refresh_token": refresh, "token_type": "Bearer", "expires_in": lifetime})
}

/// `grant_type=refresh_token`: new tokens for a refresh token (which then stops working).
fn refreshed(
    flows: &mut Flows,
    form: &TokenForm,
    key: &EncodingKey,
    kid: &str,
    issuer: &str,
) -> axum::response::Response {
    match flows.refresh_tokens.remove(&form.refresh_token) {
        Some((client_id, subject, groups)) if client_id == form.client_id => {
            flows.refreshes += 1;
            Json(tokens(
                flows, &client_id, &subject, &groups, key, kid, issuer,
            ))
            .into_response()
        }
        _ => (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response(),
    }
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
        let flows: Arc<Mutex<Flows>> = Arc::default();
        let issuer = format!("http://{addr}/");
        let key = EncodingKey::from_ed_der(der.as_bytes());
        let (signer, signing_kid, issuing) = (key.clone(), kid.clone(), issuer.clone());
        let authorize_flows = flows.clone();
        let token_flows = flows.clone();
        let device_flows = flows.clone();
        let (device_key, device_kid, device_issuer) = (key.clone(), kid.clone(), issuer.clone());
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("http://{addr}/jwks.json"),
            "authorization_endpoint": format!("http://{addr}/authorize"),
            "token_endpoint": format!("http://{addr}/token"),
            "device_authorization_endpoint": format!("http://{addr}/device"),
        });
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", {
                let flows = flows.clone();
                get(move || {
                    let mut d = discovery.clone();
                    let hide = flows.lock().map(|f| f.no_device_flow).unwrap_or(false);
                    if let (true, Some(d)) = (hide, d.as_object_mut()) {
                        d.remove("device_authorization_endpoint");
                    }
                    async move { Json(d) }
                })
            })
            .route(
                "/device",
                post(move |Form(f): Form<DeviceForm>| {
                    let flows = device_flows.clone();
                    async move {
                        let mut flows = flows.lock().unwrap_or_else(|e| e.into_inner());
                        flows.issued += 1;
                        let n = flows.issued;
                        let (device_code, user_code) = (format!("device-{n}"), format!("WDJB-{n:04}"));
                        flows.devices.insert(
                            device_code.clone(),
                            DeviceSignIn {
                                user_code: user_code.clone(),
                                client_id: f.client_id,
                                decision: None,
                            },
                        );
                        Json(json!({
                            "device_code": device_code, "user_code": user_code,
                            "verification_uri": format!("http://{addr}/activate"),
                            "verification_uri_complete": format!("http://{addr}/activate?user_code={user_code}"),
                            "expires_in": 60, "interval": 1,
                        }))
                    }
                }),
            )
            .route(
                "/jwks.json",
                get(move || {
                    let j = jwks.clone();
                    async move { Json(j) }
                }),
            )
            .route(
                "/authorize",
                get(move |Query(q): Query<AuthorizeQuery>| {
                    let flows = authorize_flows.clone();
                    let (signer, kid, issuer) =
                        (signer.clone(), signing_kid.clone(), issuing.clone());
                    async move {
                        let mut flows = flows.lock().unwrap_or_else(|e| e.into_inner());
                        let back = |query: String| {
                            let sep = if q.redirect_uri.contains('?') {
                                '&'
                            } else {
                                '?'
                            };
                            Redirect::to(&format!("{}{sep}{query}", q.redirect_uri))
                        };
                        let Some((subject, groups)) = flows.user.clone() else {
                            return back(format!("error=access_denied&state={}", q.state));
                        };
                        if q.code_challenge_method != "S256" {
                            return back(format!("error=invalid_request&state={}", q.state));
                        }
                        flows.issued += 1;
                        let code = format!("code-{}", flows.issued);
                        let now = jsonwebtoken::get_current_timestamp() as i64;
                        let claims = json!({"iss": issuer, "aud": q.client_id, "sub": subject,
                            "groups": groups, "iat": now, "exp": now + 600});
                        let mut header = Header::new(Algorithm::EdDSA);
                        header.kid = Some(kid);
                        let id_token = jsonwebtoken::encode(&header, &claims, &signer)
                            .unwrap_or_else(|e| panic!("{e}"));
                        flows.codes.insert(
                            code.clone(),
                            (
                                q.code_challenge,
                                q.redirect_uri.clone(),
                                q.client_id,
                                id_token,
                            ),
                        );
                        back(format!("code={code}&state={}", q.state))
                    }
                }),
            )
            .route(
                "/token",
                post(move |Form(f): Form<TokenForm>| {
                    let flows = token_flows.clone();
                    async move {
                        let mut flows = flows.lock().unwrap_or_else(|e| e.into_inner());
                        if f.grant_type == "refresh_token" {
                            return refreshed(
                                &mut flows,
                                &f,
                                &device_key,
                                &device_kid,
                                &device_issuer,
                            );
                        }
                        if f.grant_type == DEVICE_GRANT {
                            return device_token(
                                &mut flows,
                                &f,
                                &device_key,
                                &device_kid,
                                &device_issuer,
                            );
                        }
                        let bad = (
                            axum::http::StatusCode::BAD_REQUEST,
                            Json(json!({"error": "invalid_grant"})),
                        );
                        // A code works once.
                        let Some((challenge, redirect_uri, client_id, id_token)) =
                            flows.codes.remove(&f.code)
                        else {
                            return bad.into_response();
                        };
                        let pkce = URL_SAFE_NO_PAD
                            .encode(sha2::Sha256::digest(f.code_verifier.as_bytes()));
                        if f.grant_type != "authorization_code"
                            || pkce != challenge
                            || f.redirect_uri != redirect_uri
                            || f.client_id != client_id
                        {
                            return bad.into_response();
                        }
                        Json(
                            json!({"id_token": id_token, "access_token": "opaque-access-token",
                                    "token_type": "Bearer", "expires_in": 600}),
                        )
                        .into_response()
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            issuer,
            device_url: format!("http://{addr}/device"),
            jwks_url: format!("http://{addr}/jwks.json"),
            authorization_url: format!("http://{addr}/authorize"),
            token_url: format!("http://{addr}/token"),
            kid,
            key,
            flows,
        }
    }

    /// Whom the authorization endpoint signs in from now on (`None`: it refuses).
    pub fn sign_in_as(&self, user: Option<(&str, &[&str])>) {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows.user = user.map(|(s, g)| (s.to_owned(), g.iter().map(|g| (*g).to_owned()).collect()));
    }

    /// The user approves (`Some((subject, groups))`) or denies (`None`) the device
    /// sign-in showing `user_code`; `false` when no sign-in shows it.
    pub fn decide_device(&self, user_code: &str, user: Option<(&str, &[&str])>) -> bool {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        let Some(device) = flows
            .devices
            .values_mut()
            .find(|d| d.user_code == user_code)
        else {
            return false;
        };
        device.decision = Some(
            user.map(|(s, g)| (s.to_owned(), g.iter().map(|g| (*g).to_owned()).collect()))
                .ok_or(()),
        );
        true
    }

    /// From now on the provider offers no device flow (its discovery says so).
    pub fn hide_device_flow(&self) {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .no_device_flow = true;
    }

    /// Lifetime of the tokens the device grant and refreshes issue from now on.
    pub fn set_token_lifetime(&self, secs: i64) {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token_lifetime = Some(secs);
    }

    /// How many refresh tokens were traded for new tokens so far.
    pub fn refreshes(&self) -> u64 {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refreshes
    }

    /// How often the token endpoint was asked about device codes so far.
    pub fn device_polls(&self) -> u64 {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .device_polls
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
