//! The reconciler as separate processes of the real binary, on one database, against
//! moto and the fake Mantle: killed mid-pass (SIGKILL) it converges on the next run
//! with no orphan and no duplicate; two replicas never reconcile one project twice.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_testkit::free_port;
use strata_testkit::moto::{moto_iam, moto_url};
use strata_testkit::{Backend, FakeMantle, TestDb, project_body};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Replicas must share the key that encrypts signing keys (base64 of bytes 0..32)
/// and the proxy's credential.
const KEY_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `strata <args>` with AWS pointed at moto and Mantle at the fake.
fn strata(args: &[&str], dir: &Path, db: &str, mantle: &FakeMantle, lease_secs: u32) -> Command {
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

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(dir: &Path, db: &str, mantle: &FakeMantle, lease_secs: u32) -> Server {
    let port = free_port();
    let child = strata(&["serve"], dir, db, mantle, lease_secs)
        .env("STRATA_LISTEN", format!("127.0.0.1:{port}"))
        .env("STRATA_ADMIN_TOKEN_FILE", dir.join("admin.token"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // Dropping the server kills and reaps it, also when it never gets ready.
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
    panic!("strata serve did not become ready");
}

/// Runs a `strata` command to the end without blocking the fake Mantle's runtime.
async fn run_to_end(
    args: &[&str],
    dir: &Path,
    db: &str,
    mantle: &FakeMantle,
) -> std::process::Output {
    let mut cmd = strata(args, dir, db, mantle, 5);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.token"))
        .unwrap_or_else(|e| panic!("admin token: {e}"))
        .trim()
        .to_owned()
}

async fn create(base: &str, token: &str, body: &Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/projects"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap_or_else(|e| panic!("{e}"));
    v["id"].as_str().unwrap_or_default().to_owned()
}

async fn observed(base: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/projects/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_all_observed(base: &str, token: &str, ids: &[String], within: Duration) {
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
async fn assert_converged(mantle: &FakeMantle, ids: &[String], projects: &[Value]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_killed_mid_pass_converges_on_the_next_run() {
    for kill_after_creates in [1, 5, 9] {
        let db = TestDb::of(Backend::Postgres).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mantle = FakeMantle::start().await;
        mantle.delay_creates(Duration::from_millis(150));
        let server = serve(dir.path(), &db.url, &mantle, 5).await;
        let token = admin_token(dir.path());
        let mut ids = Vec::new();
        for i in 0..12 {
            ids.push(create(&server.base, &token, &project_body(&format!("kill-{i}"))).await);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while mantle.calls("CreateProject") < kill_after_creates {
            assert!(Instant::now() < deadline, "the loop made no Mantle project");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(server); // SIGKILL, mid-pass
        mantle.delay_creates(Duration::ZERO);
        // The dead replica's leases expire (5 s); then one pass converges.
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        let out = run_to_end(&["reconcile"], dir.path(), &db.url, &mantle).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kill after {kill_after_creates}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("12 project(s): 12 in sync, 0 failed, 0 skipped"),
            "{stdout}"
        );
        let server = serve(dir.path(), &db.url, &mantle, 5).await;
        let mut projects = Vec::new();
        for id in &ids {
            projects.push(observed(&server.base, &token, id).await);
        }
        assert_converged(&mantle, &ids, &projects).await;
        assert_eq!(
            mantle.calls("CreateProject"),
            12,
            "kill after {kill_after_creates}: a create was repeated"
        );
        // And the next pass writes nothing.
        drop(server);
        let out = run_to_end(&["reconcile"], dir.path(), &db.url, &mantle).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("(0 mutating"), "{stdout}");
        // The dry run agrees: nothing to do.
        let out = run_to_end(&["reconcile", "--dry-run"], dir.path(), &db.url, &mantle).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert_eq!(
            stdout.matches("in sync: no changes").count(),
            12,
            "{stdout}"
        );
        assert!(stdout.contains("(0 mutating"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_reconcile_each_project_once() {
    let db = TestDb::of(Backend::Postgres).await;
    let dir_a = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir_b = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mantle = FakeMantle::start().await;
    mantle.delay_creates(Duration::from_millis(50));
    let a = serve(dir_a.path(), &db.url, &mantle, 30).await;
    let b = serve(dir_b.path(), &db.url, &mantle, 30).await;
    let token = admin_token(dir_a.path());
    let mut ids = Vec::new();
    for i in 0..30 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        ids.push(create(base, &token, &project_body(&format!("pair-{i}"))).await);
    }
    wait_all_observed(&a.base, &token, &ids, Duration::from_secs(60)).await;
    assert_eq!(
        mantle.calls("CreateProject"),
        30,
        "each project's Mantle project made once"
    );
    let mut projects = Vec::new();
    for id in &ids {
        projects.push(observed(&b.base, &token, id).await);
    }
    assert_converged(&mantle, &ids, &projects).await;
    // A change through replica B is applied once, by whichever replica claims it.
    let r = reqwest::Client::new()
        .patch(format!("{}/api/v1/projects/{}", b.base, ids[0]))
        .bearer_auth(&token)
        .json(&json!({"tags": {"CostCenter": "cc-2"}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while observed(&a.base, &token, &ids[0]).await["observed_generation"] != 2 {
        assert!(Instant::now() < deadline, "the change was not reconciled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        mantle.calls("UpdateProject"),
        1,
        "one replica applied the change"
    );
}
