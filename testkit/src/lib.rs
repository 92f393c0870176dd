//! Test harness: a fresh database per test (Postgres or SQLite, chosen by
//! `STRATA_TEST_BACKEND`), the real app on port 0, tokens for any role, a fake
//! OIDC identity provider, and a TCP proxy that can cut the database off.

pub mod browser;
mod db;
mod fault;
mod idp;
mod mantle;
pub mod moto;

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_api::{App, AppState, HttpConfig, build_router};
use strata_aws::{AwsCalls, AwsClients};
use strata_core::clock::{Clock, SystemClock};
use strata_core::config::{AuthConfig, DatabaseConfig, KeysConfig, ProxyCredentialConfig, Secret};
use strata_core::keys::KeyEncryptionKey;
use strata_core::store::Store;
use strata_reconciler::{Reconciler, ReconcilerConfig};
use tokio_util::sync::CancellationToken;

pub use db::{Backend, TestDb};
pub use fault::FaultProxy;
pub use idp::FakeIdp;
pub use mantle::{ChatCall, ChatStats, FakeMantle, FakeProject, MessageCall, ResponsesStats};

/// A running control plane on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub db: TestDb,
    pub client: reqwest::Client,
    /// A platform-admin token.
    pub admin: String,
    shutdown: CancellationToken,
}

/// What the next request sends and returns, for tests that check headers.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of an error envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

pub struct TestAppBuilder {
    db: Option<TestDb>,
    auth: AuthConfig,
    keys: KeysConfig,
    http: HttpConfig,
    aws: Option<AwsClients>,
    reconciler: ReconcilerConfig,
    run_reconciler: bool,
}

impl TestAppBuilder {
    pub fn db(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    pub fn auth(mut self, auth: AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    /// API key settings (default: a random key encryption key, built-in limits).
    pub fn keys(mut self, keys: KeysConfig) -> Self {
        self.keys = keys;
        self
    }

    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// AWS adapters for the reconciler (default: not configured).
    pub fn aws(mut self, aws: AwsClients) -> Self {
        self.aws = Some(aws);
        self
    }

    pub fn reconciler(mut self, config: ReconcilerConfig) -> Self {
        self.reconciler = config;
        self
    }

    /// Also run the reconcile loop, as `strata serve` does.
    pub fn run_reconciler(mut self) -> Self {
        self.run_reconciler = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let db = match self.db {
            Some(db) => db,
            None => TestDb::new().await,
        };
        let mut config = DatabaseConfig::new(db.url.clone());
        config.acquire_timeout_secs = 2;
        config.connect_timeout_secs = 2;
        let store = Store::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
        strata_migrations::up(store.db())
            .await
            .unwrap_or_else(|e| panic!("migrating the test database: {e}"));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let aws = self.aws.unwrap_or_else(|| {
            AwsClients::unconfigured("not configured in this test", AwsCalls::new())
        });
        let reconciler = Reconciler::new(store.clone(), aws, self.reconciler, clock.clone());
        let (state, _) = App::build(
            store,
            clock,
            &self.auth,
            &self.keys,
            &ProxyCredentialConfig::with_token(Secret::new(format!(
                "test-proxy-{}",
                uuid::Uuid::now_v7().simple()
            ))),
            self.http,
            reconciler.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("building the app: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let shutdown = CancellationToken::new();
        if self.run_reconciler {
            tokio::spawn(reconciler.run(shutdown.clone()));
        }
        let stop = shutdown.clone();
        let router = build_router(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        let mut app = TestApp {
            addr,
            state,
            db,
            client: reqwest::Client::new(),
            admin: String::new(),
            shutdown,
        };
        app.admin = app.token("admin", &["platform-admin"]);
        app
    }
}

/// Key settings with a fresh random key encryption key.
pub fn test_keys_config() -> KeysConfig {
    let key = KeyEncryptionKey::generate_base64().unwrap_or_else(|e| panic!("{e}"));
    KeysConfig::with_encryption_key(Secret::new(key))
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            db: None,
            auth: AuthConfig::default(),
            keys: test_keys_config(),
            http: HttpConfig::default(),
            aws: None,
            reconciler: ReconcilerConfig::default(),
            run_reconciler: false,
        }
    }

    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A token from the app's local issuer.
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let issuer = self
            .state
            .local_issuer
            .as_ref()
            .unwrap_or_else(|| panic!("the local issuer is disabled"));
        issuer
            .mint(subject, &roles, 3600, &SystemClock)
            .unwrap_or_else(|e| panic!("minting: {e}"))
    }

    /// Sends a request; `token` may be empty for none.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, token, None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, token, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, token, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, token, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(Method::DELETE, path, token, None, &[]).await
    }

    /// Creates a project as admin and returns its JSON; panics unless 201.
    pub async fn create_project(&self, body: &Value) -> Value {
        let r = self.post("/api/v1/projects", &self.admin, body).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "creating a project: {}",
            r.body
        );
        r.body
    }

    pub async fn add_member(&self, project_id: &str, subject: &str, role: &str) {
        let r = self
            .put(
                &format!("/api/v1/projects/{project_id}/members/{subject}"),
                &self.admin,
                &json!({"role": role}),
            )
            .await;
        assert!(r.status.is_success(), "adding a member: {}", r.body);
    }
}

/// A valid project body; tests change what they need.
/// A port for a child process to listen on, below Linux's ephemeral range
/// (32768–60999): a port from `bind(0)` is in that range, where any outgoing connection
/// of any process may take it before the child binds it (a flaky "did not become
/// ready"). Checked free at the time of the call.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let mut bytes = [0u8; 2];
        if getrandom::fill(&mut bytes).is_err() {
            break;
        }
        let port = 20_000 + u16::from_le_bytes(bytes) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

pub fn project_body(name: &str) -> Value {
    json!({
        "name": name,
        "display_name": format!("{name} service"),
        "environment": "prod",
        "team": "payments",
        "region": "us-east-1",
        "allowed_models": ["openai.gpt-oss-120b", "openai.gpt-oss-20b"],
        "tags": {"CostCenter": "cc-1234", "Owner": "payments-team"},
        "data_retention": "zdr",
        "monthly_budget_usd": 500.0,
        "rate_limits": {"rpm": 600, "tpm": 200000}
    })
}
