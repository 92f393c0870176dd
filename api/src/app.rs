//! The application: shared state (`AppState(Arc<App>)`), assembly from configuration,
//! and the router with its middleware stack.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use clap::Args;
use strata_core::CoreError;
use strata_core::auth::{LocalIssuer, OidcVerifier, RbacError, RbacPolicy, TokenVerifier};
use strata_core::clock::Clock;
use strata_core::config::{AuthConfig, KeysConfig, ProxyCredentialConfig, Secret, SecretError};
use strata_core::keys::{ApiKeyIssuer, IssuerError, KekError, KeyEncryptionKey};
use strata_core::services::Services;
use strata_core::store::Store;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::Metrics;
use crate::{middleware, openapi, routes, ui};

/// HTTP settings of `strata serve`.
#[derive(Clone, Debug, Args)]
pub struct HttpConfig {
    /// Seconds a request may take before it is answered with 503.
    #[arg(
        long = "request-timeout",
        env = "STRATA_REQUEST_TIMEOUT",
        default_value_t = 30
    )]
    pub request_timeout_secs: u64,
    /// Largest request body accepted, in bytes.
    #[arg(
        long = "body-limit",
        env = "STRATA_BODY_LIMIT",
        default_value_t = 1_048_576
    )]
    pub body_limit_bytes: usize,
    /// Mark the pages' cookies `Secure` (browsers then send them over HTTPS only):
    /// set it wherever strata is reached over TLS.
    #[arg(
        long = "ui-secure-cookies",
        env = "STRATA_UI_SECURE_COOKIES",
        default_value_t = false
    )]
    pub ui_secure_cookies: bool,
    /// Percent by which the proxy's metered estimate of a project's day may differ
    /// from Cost Explorer's bill before it is flagged (API and pages).
    #[arg(
        long = "cost-drift-pct",
        env = "STRATA_COST_DRIFT_PCT",
        default_value_t = 5.0,
        value_parser = drift_percent
    )]
    pub cost_drift_pct: f64,
    #[command(flatten)]
    pub sso: SsoConfig,
    #[command(flatten)]
    pub notify: strata_core::config::NotifyConfig,
}

fn drift_percent(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1000.0).contains(p))
        .ok_or_else(|| format!("'{text}': a percentage from 0 to 1000"))
}

/// Signing in to the pages through the identity provider (OIDC authorization code
/// with PKCE). Its tokens are checked by the OIDC settings above, so
/// `STRATA_OIDC_AUDIENCE` must accept what the provider issues to this client
/// (usually the client id).
#[derive(Clone, Debug, Args)]
pub struct SsoConfig {
    /// The provider's authorization endpoint; with the token endpoint and a client
    /// id, the sign-in page offers "Sign in with your identity provider".
    #[arg(
        long = "ui-oidc-authorization-url",
        env = "STRATA_UI_OIDC_AUTHORIZATION_URL",
        requires_all = ["token_url", "client_id"]
    )]
    pub authorization_url: Option<String>,
    /// The provider's token endpoint.
    #[arg(long = "ui-oidc-token-url", env = "STRATA_UI_OIDC_TOKEN_URL")]
    pub token_url: Option<String>,
    /// strata's client id at the provider.
    #[arg(long = "ui-oidc-client-id", env = "STRATA_UI_OIDC_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The client secret, for providers that want one besides PKCE.
    #[arg(long = "ui-oidc-client-secret", env = "STRATA_UI_OIDC_CLIENT_SECRET")]
    pub client_secret: Option<strata_core::config::Secret>,
    /// Scopes asked for.
    #[arg(
        long = "ui-oidc-scopes",
        env = "STRATA_UI_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub scopes: String,
    /// The URL people reach strata at (e.g. `https://strata.example.com`); the
    /// provider sends them back to `<this>/ui/signin/callback`. Default: the request's
    /// host over http.
    #[arg(long = "public-url", env = "STRATA_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            authorization_url: None,
            token_url: None,
            client_id: None,
            client_secret: None,
            scopes: "openid profile email".into(),
            public_url: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30,
            body_limit_bytes: 1_048_576,
            ui_secure_cookies: false,
            cost_drift_pct: 5.0,
            sso: SsoConfig::default(),
            notify: strata_core::config::NotifyConfig::default(),
        }
    }
}

pub struct App {
    pub services: Services,
    pub verifier: TokenVerifier,
    pub rbac: Arc<RbacPolicy>,
    pub local_issuer: Option<Arc<LocalIssuer>>,
    /// Signs scoped API keys for the proxy.
    pub key_issuer: Arc<ApiKeyIssuer>,
    /// The credential the proxy presents (snapshot, usage).
    pub proxy_token: Secret,
    /// The last policy snapshot served, by version, shared by every polling proxy.
    pub snapshot_cache: std::sync::Mutex<Option<(String, axum::body::Bytes)>>,
    pub metrics: Metrics,
    pub http: HttpConfig,
    /// For plans; `strata serve` also runs its loop.
    pub reconciler: strata_reconciler::Reconciler,
    /// Seals and opens secrets at rest (webhook signing secrets).
    pub kek: strata_core::keys::KeyEncryptionKey,
    /// For test sends to notification destinations.
    pub notify_http: reqwest::Client,
    /// What `strata login` signs in with, when an identity provider is set up for it.
    pub cli_login: Option<crate::routes::CliLogin>,
    /// The OpenAPI document, generated once, and its JSON.
    pub openapi: utoipa::openapi::OpenApi,
    pub openapi_json: String,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// Why the control plane cannot start; each names the setting or resource to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    #[error(transparent)]
    Rbac(#[from] RbacError),
    #[error("cannot load the local token issuer key")]
    LocalIssuer(#[source] CoreError),
    #[error(
        "no token issuer: enable STRATA_LOCAL_ISSUER or configure STRATA_OIDC_ISSUER and \
         STRATA_OIDC_JWKS_URL"
    )]
    NoTokenIssuer,
    #[error("cannot render the OpenAPI document")]
    OpenApi(#[source] serde_json::Error),
    #[error("cannot start the notifications' HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

impl App {
    /// Wires the app from configuration. Returns it and whether this was the first
    /// start on this database (the local issuer key was just created).
    pub async fn build(
        store: Store,
        clock: Arc<dyn Clock>,
        auth: &AuthConfig,
        keys: &KeysConfig,
        proxy: &ProxyCredentialConfig,
        http: HttpConfig,
        reconciler: strata_reconciler::Reconciler,
    ) -> Result<(AppState, bool), StartupError> {
        let proxy_token = proxy.load()?;
        let kek = KeyEncryptionKey::from_config(keys)?;
        let key_issuer = Arc::new(
            ApiKeyIssuer::with_encryption_key(&store, kek.clone(), keys, clock.as_ref()).await?,
        );
        let rbac = Arc::new(RbacPolicy::load(auth.rbac_file.as_deref())?);
        let (local_issuer, first_start) = if auth.local_issuer_enabled {
            let (issuer, created) = LocalIssuer::load_or_create(
                &store,
                &auth.local_issuer_name,
                &auth.audience,
                &kek,
                clock.as_ref(),
            )
            .await
            .map_err(StartupError::LocalIssuer)?;
            (Some(Arc::new(issuer)), created)
        } else {
            (None, false)
        };
        let oidc = match (&auth.oidc_issuer, &auth.oidc_jwks_url) {
            (Some(issuer), Some(jwks)) => Some(OidcVerifier::new(
                issuer.clone(),
                auth.oidc_audience
                    .clone()
                    .unwrap_or_else(|| auth.audience.clone()),
                jwks.clone(),
                auth.oidc_groups_claim.clone(),
            )),
            _ => None,
        };
        if local_issuer.is_none() && oidc.is_none() {
            return Err(StartupError::NoTokenIssuer);
        }
        let verifier = TokenVerifier::new(local_issuer.clone(), oidc, rbac.clone(), clock.clone());
        let openapi = openapi::document();
        let openapi_json = openapi.to_pretty_json().map_err(StartupError::OpenApi)?;
        let metrics = Metrics::new();
        metrics.register(|registry| reconciler.register_metrics(registry));
        let app = App {
            services: Services::new(store, clock),
            verifier,
            rbac,
            local_issuer,
            key_issuer,
            proxy_token,
            snapshot_cache: std::sync::Mutex::new(None),
            metrics,
            http,
            reconciler,
            kek: kek.clone(),
            // A destination's redirect is not followed: it could point anywhere.
            notify_http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(StartupError::HttpClient)?,
            cli_login: match (&auth.oidc_issuer, &auth.oidc_cli_client_id) {
                (Some(issuer), Some(client_id)) => Some(crate::routes::CliLogin {
                    issuer: issuer.clone(),
                    client_id: client_id.clone(),
                    scopes: auth.oidc_cli_scopes.clone(),
                    token: auth.oidc_cli_token.clone(),
                }),
                _ => None,
            },
            openapi,
            openapi_json,
        };
        Ok((AppState(Arc::new(app)), first_start))
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn build_router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.http.request_timeout_secs);
    let body_limit = state.http.body_limit_bytes;
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &axum::http::Request<_>| {
            let request_id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!("http", http.method = %req.method(), http.path = %req.uri().path(), request.id = %request_id)
        })
        .on_request(())
        .on_response(|res: &axum::http::Response<_>, latency: Duration, _: &tracing::Span| {
            let duration_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
            tracing::info!(http.status = res.status().as_u16(), duration_ms, "request finished");
        });
    routes::router()
        .merge(ui::router(state.clone()))
        .fallback(middleware::fallback)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::record_metrics,
                ))
                .layer(axum::middleware::from_fn(middleware::envelope_bare_errors))
                .layer(axum::middleware::from_fn(middleware::refuse_nul_queries))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout,
                ))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}
