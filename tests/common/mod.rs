//! Running the real `strata` binary as separate processes on one database, against
//! moto and the fake Mantle: the helpers the process tests share.
#![allow(dead_code)] // each test binary uses its own share of the helpers

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_testkit::FakeMantle;
use strata_testkit::free_port;
use strata_testkit::moto::{moto_iam, moto_url};

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Replicas must share the key that encrypts signing keys (base64 of bytes 0..32)
/// and the proxy's credential.
pub const KEY_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `strata <args>` with AWS pointed at moto and Mantle at the fake.
pub fn strata(
    args: &[&str],
    dir: &Path,
    db: &str,
    mantle: &FakeMantle,
    lease_secs: u32,
) -> Command {
    let mut cmd = Command::new(STRATA);
    cmd.args(args)
        .current_dir(dir)
        .env("STRATA_DATABASE_URL", db)
        .env("STRATA_KEY_ENCRYPTION_KEY", KEY_ENCRYPTION_KEY)
        .env(
            "STRATA_PROXY_TOKEN",
            "shared-by-every-replica-0123456789abcdef",
        )
        .env("STRATA_MANTLE_URL", mantle.url())
        .env("STRATA_SERVE_PROXY", "false")
        .env("STRATA_COST_ALLOCATION_TAGS", "")
        // Scheduled cost refreshes would take Cost Explorer answers other tests queued
        // in the shared moto.
        .env("STRATA_COST_REFRESH_INTERVAL_SECS", "0")
        .env("STRATA_RECONCILE_POLL_MS", "100")
        .env("STRATA_RECONCILE_LEASE_SECS", lease_secs.to_string())
        .env("STRATA_LOG", "warn")
        .env("AWS_ENDPOINT_URL", moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn serve(dir: &Path, db: &str, mantle: &FakeMantle, lease_secs: u32) -> Server {
    let port = free_port();
    let child = strata(&["serve"], dir, db, mantle, lease_secs)
        .env("STRATA_LISTEN", format!("127.0.0.1:{port}"))
        .env("STRATA_ADMIN_TOKEN_FILE", dir.join("admin.token"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(child, port, "strata serve").await
}

/// The process listening on `port`, once its `/readyz` answers 200. Dropping the
/// server kills and reaps it, also when it never gets ready.
pub async fn ready(child: Child, port: u16, what: &str) -> Server {
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::get(format!("{}/readyz", server.base))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not become ready");
}

/// Runs a `strata` command to the end without blocking the fake Mantle's runtime.
pub async fn run_to_end(
    args: &[&str],
    dir: &Path,
    db: &str,
    mantle: &FakeMantle,
) -> std::process::Output {
    let mut cmd = strata(args, dir, db, mantle, 5);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap()
}

pub fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.token"))
        .unwrap_or_else(|e| panic!("admin token: {e}"))
        .trim()
        .to_owned()
}

pub async fn create(base: &str, token: &str, body: &Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/projects"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap_or_default().to_owned()
}

pub async fn observed(base: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/projects/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn wait_all_observed(base: &str, token: &str, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut pending = Vec::new();
        for id in ids {
            if observed(base, token, id).await["observed_generation"] != 1 {
                pending.push(id.clone());
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "not reconciled: {pending:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One active Mantle project per strata project, each role present with its policy.
pub async fn assert_converged(mantle: &FakeMantle, ids: &[String], projects: &[Value]) {
    let active: Vec<_> = mantle
        .projects()
        .into_iter()
        .filter(|p| p.status == "active")
        .collect();
    for id in ids {
        let mine = active
            .iter()
            .filter(|p| p.tags.get("strata:project") == Some(id))
            .count();
        assert_eq!(mine, 1, "project {id} has {mine} active Mantle projects");
    }
    assert_eq!(active.len(), ids.len(), "no orphan Mantle project");
    let iam = moto_iam().await;
    for p in projects {
        let role = p["aws"]["role_arn"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or_default()
            .to_owned();
        let policy = iam
            .get_role_policy()
            .role_name(&role)
            .policy_name("strata-inference")
            .send()
            .await;
        assert!(
            policy.is_ok(),
            "role {role} of {} lacks its policy",
            p["id"]
        );
    }
}
