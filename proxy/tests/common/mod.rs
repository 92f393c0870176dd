//! The world the proxy's HTTP tests run in: the real control plane (in process) on
//! moto, the fake Mantle, and a proxy serving on port 0; helpers to make projects and
//! keys and to send requests.
#![allow(dead_code)] // each test binary uses its own share of the helpers

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_proxy::{Proxy, ProxyConfig, ProxySettings};
use strata_reconciler::ReconcilerConfig;
use strata_testkit::moto::{moto_clients, moto_sdk_config, moto_url};
use strata_testkit::{FakeMantle, TestApp, project_body};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct World {
    pub app: TestApp,
    pub mantle: FakeMantle,
    pub proxy: Arc<Proxy>,
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_proxy(
    control_plane: &str,
    credential: strata_core::config::Secret,
    mantle: &FakeMantle,
    config: ProxyConfig,
) -> (
    Arc<Proxy>,
    String,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let keys = strata_testkit::test_keys_config();
    // As `strata proxy` chooses: a configured Bedrock API key, else assumed roles.
    let upstream = config
        .upstream_auth(moto_sdk_config(), "strata-proxy-test")
        .await;
    let settings = ProxySettings {
        config,
        control_plane_url: control_plane.to_owned(),
        credential,
        key_issuer: keys.key_issuer,
        audience: keys.proxy_audience,
        mantle_url: mantle.url(),
    };
    let proxy = Arc::new(Proxy::new(settings, reqwest::Client::new(), upstream).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(strata_proxy::serve(
        listener,
        proxy.clone(),
        shutdown.clone(),
    ));
    (proxy, base, shutdown, served)
}

pub async fn world() -> World {
    world_with(ProxyConfig::default()).await
}

pub async fn world_with(config: ProxyConfig) -> World {
    let mantle = FakeMantle::start().await;
    // Every proxied call is authorized as AWS does: by the role's policy in moto.
    mantle.enforce_iam(&moto_url());
    let app = TestApp::builder()
        .aws(moto_clients(&mantle.url()).await)
        .reconciler(ReconcilerConfig {
            cost_allocation_tags: Vec::new(),
            ..ReconcilerConfig::default()
        })
        .spawn()
        .await;
    let (proxy, base, shutdown, served) =
        start_proxy(&app.url(""), app.state.proxy_token.clone(), &mantle, config).await;
    World {
        app,
        mantle,
        proxy,
        base,
        client: reqwest::Client::new(),
        shutdown,
        served: Some(served),
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub request_id: Option<String>,
    pub body: Value,
}

impl World {
    /// A project reconciled onto moto and the fake Mantle, and a key for it.
    pub async fn project(&self, name: &str, models: &[&str]) -> (Uuid, String) {
        self.project_in(name, models, "us-east-1").await
    }

    /// [`World::project`] in another region.
    pub async fn project_in(&self, name: &str, models: &[&str], region: &str) -> (Uuid, String) {
        let mut body = project_body(&format!(
            "{name}-{}",
            &Uuid::now_v7().simple().to_string()[24..]
        ));
        body["allowed_models"] = json!(models);
        body["region"] = json!(region);
        let p = self.app.create_project(&body).await;
        let id = Uuid::parse_str(p["id"].as_str().unwrap_or_default()).unwrap();
        self.reconcile(id).await;
        let secret = self.key(id, json!({"name": "k"})).await;
        // The proxy sees the project's Mantle id once its snapshot catches up.
        let started = Instant::now();
        while !self.proxy.follower.current().is_some_and(|p| {
            p.projects
                .get(&id)
                .is_some_and(|p| p.mantle_project_id.is_some() && p.role_arn.is_some())
        }) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the proxy never saw the reconciled project"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (id, secret)
    }

    /// One reconcile pass over the project (onto moto and the fake Mantle).
    pub async fn reconcile(&self, project: Uuid) {
        self.app
            .state
            .reconciler
            .run_for(&[project])
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}"));
    }

    /// The project role's name and its `strata-inference` policy as moto holds it.
    pub async fn role_policy(&self, project: Uuid) -> (String, Value) {
        let p = self
            .app
            .get(&format!("/api/v1/projects/{project}"), &self.app.admin)
            .await;
        let role = p.body["aws"]["role_arn"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or_default()
            .to_owned();
        let doc = strata_testkit::moto::moto_iam()
            .await
            .get_role_policy()
            .role_name(&role)
            .policy_name("strata-inference")
            .send()
            .await
            .unwrap();
        let policy = strata_core::policy::parse_policy(doc.policy_document()).unwrap();
        (role, policy)
    }

    /// Rewrites the project role's inline policy in moto (behind strata's back) with
    /// `keep` its only actions.
    pub async fn narrow_role_policy(&self, project: Uuid, keep: &[&str]) {
        let (role, mut policy) = self.role_policy(project).await;
        let mut statements = match policy["Statement"].take() {
            Value::Array(items) => items,
            one => vec![one],
        };
        for statement in &mut statements {
            let actions: Vec<Value> = match statement["Action"].take() {
                Value::Array(items) => items,
                one => vec![one],
            };
            statement["Action"] = actions
                .into_iter()
                .filter(|a| a.as_str().is_some_and(|a| keep.contains(&a)))
                .collect();
        }
        statements.retain(|s| s["Action"].as_array().is_some_and(|a| !a.is_empty()));
        policy["Statement"] = Value::Array(statements);
        strata_testkit::moto::moto_iam()
            .await
            .put_role_policy()
            .role_name(&role)
            .policy_name("strata-inference")
            .policy_document(policy.to_string())
            .send()
            .await
            .unwrap();
    }

    /// The last chat call the fake Mantle received.
    pub fn last_chat_call(&self) -> strata_testkit::ChatCall {
        self.mantle
            .chat_calls()
            .into_iter()
            .last()
            .unwrap_or_else(|| panic!("no chat call reached Mantle"))
    }

    pub async fn key(&self, project: Uuid, body: Value) -> String {
        let r = self
            .app
            .post(
                &format!("/api/v1/projects/{project}/keys"),
                &self.app.admin,
                &body,
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        r.body["secret"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let r = request.send().await.unwrap();
        let status = r.status();
        let request_id = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            request_id,
            body,
        }
    }

    pub async fn chat(&self, key: &str, body: &Value) -> Answer {
        self.send(
            self.client
                .post(format!("{}/v1/chat/completions", self.base))
                .bearer_auth(key)
                .json(body),
        )
        .await
    }

    /// The proxy's `/metrics`, as Prometheus text.
    pub async fn proxy_metrics(&self) -> String {
        let r = self.client.get(format!("{}/metrics", self.base));
        r.send().await.unwrap().text().await.unwrap_or_default()
    }

    /// Shuts the proxy down and waits for it (streams finished, usage flushed).
    pub async fn stop_proxy(&mut self) {
        self.shutdown.cancel();
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), served).await;
        }
    }
}

/// Keeps a test that counts within one minute away from the minute's end.
pub async fn clear_of_the_minute_end() {
    let second = Utc::now().second();
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
}

pub fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

/// The error envelope, exactly: four fields, the right code.
pub fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    let e = &a.body["error"];
    let mut keys: Vec<&str> = e
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{}", a.body);
    assert_eq!(e["code"], code, "{}", a.body);
    assert!(a.request_id.is_some(), "every response has x-request-id");
}

/// Repeats `request` until it answers `status`; fails after `within` with `what`.
pub async fn answers_within<F, Fut>(
    within: Duration,
    status: StatusCode,
    what: &str,
    mut request: F,
) -> Answer
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let started = Instant::now();
    loop {
        let a = request().await;
        if a.status == status {
            return a;
        }
        assert!(started.elapsed() < within, "{what} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const OSS: &str = "openai.gpt-oss-20b";
pub const GEMMA: &str = "google.gemma-3-27b-it";
