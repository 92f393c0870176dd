//! strata scaled out as production runs it, on this machine: two `strata serve` and
//! two `strata proxy` processes on one Postgres and one Redis, against moto and the
//! fake Mantle. A key revoked through one control plane is refused by both proxies
//! within a second; a proxy stopped with SIGTERM finishes the 50 streams it carries
//! while the other takes new requests; 200 projects created through alternating
//! control planes are each provisioned once, also when one control plane is killed
//! (SIGKILL) mid-reconcile and the other takes its leases over when they expire.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use strata_testkit::{Backend, FakeMantle, TestDb, free_port, project_body};

const MODEL: &str = "openai.gpt-oss-20b";
/// Control-plane leases: short, so the survivor takes a dead replica's work soon.
const LEASE_SECS: u32 = 5;

/// `strata proxy` following `control_plane`, counting limits in the shared Redis.
async fn proxy(
    dir: &Path,
    db: &str,
    mantle: &FakeMantle,
    control_plane: &str,
    prefix: &str,
) -> Server {
    let port = free_port();
    let redis =
        std::env::var("STRATA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let child = strata(&["proxy"], dir, db, mantle, LEASE_SECS)
        .env("STRATA_PROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("STRATA_CONTROL_PLANE_URL", control_plane)
        .env("STRATA_REDIS_URL", redis)
        .env("STRATA_REDIS_KEY_PREFIX", prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(child, port, "strata proxy").await
}

async fn chat(proxy: &str, key: &str, stream: bool) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .post(format!("{proxy}/v1/chat/completions"))
        .bearer_auth(key)
        // A small max_tokens: the project's token limit (200,000 a minute) must fit
        // 50 streams' reservations at once.
        .json(&json!({"model": MODEL, "stream": stream, "max_tokens": 50,
            "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}))
        .send()
        .await
}

/// A key for `project` made through `control_plane`: (id, secret).
async fn key(control_plane: &str, token: &str, project: &str) -> (String, String) {
    let r: Value = reqwest::Client::new()
        .post(format!("{control_plane}/api/v1/projects/{project}/keys"))
        .bearer_auth(token)
        .json(&json!({"name": "multi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        r["id"].as_str().unwrap_or_default().to_owned(),
        r["secret"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Waits until `proxy` answers a chat with `key` with `status`.
async fn answers(proxy: &str, key: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if chat(proxy, key, false)
            .await
            .is_ok_and(|r| r.status().as_u16() == status)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{proxy} did not answer {status} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_and_two_proxies_on_one_database_and_redis() {
    let db = TestDb::of(Backend::Postgres).await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mantle = FakeMantle::start().await;
    mantle.enforce_iam(&strata_testkit::moto::moto_url());
    let a = serve(dirs[0].path(), &db.url, &mantle, LEASE_SECS).await;
    let b = serve(dirs[1].path(), &db.url, &mantle, LEASE_SECS).await;
    let token = admin_token(dirs[0].path());
    let prefix = format!("strata-multi-{}", std::process::id());
    let mut p1 = proxy(dirs[2].path(), &db.url, &mantle, &a.base, &prefix).await;
    let p2 = proxy(dirs[3].path(), &db.url, &mantle, &b.base, &prefix).await;

    // A key revoked through control plane A is refused by both proxies within 1 s.
    let first = create(&a.base, &token, &project_body("multi-first")).await;
    wait_all_observed(
        &b.base,
        &token,
        std::slice::from_ref(&first),
        Duration::from_secs(30),
    )
    .await;
    let (key_id, secret) = key(&b.base, &token, &first).await;
    for p in [&p1.base, &p2.base] {
        answers(p, &secret, 200, Duration::from_secs(10)).await;
    }
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/projects/{first}/keys/{key_id}/revoke",
            a.base
        ))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked = Instant::now();
    for p in [&p1.base, &p2.base] {
        answers(p, &secret, 401, Duration::from_secs(1)).await;
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "{p} took {:?}",
            revoked.elapsed()
        );
    }

    // Rolling restart: SIGTERM proxy 1 while 50 streams run through it; every stream
    // finishes, and new requests go to proxy 2.
    let (_, secret) = key(&a.base, &token, &first).await;
    answers(&p1.base, &secret, 200, Duration::from_secs(10)).await;
    mantle.delay_chunks(Duration::from_millis(100));
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let streams: Vec<_> = (0..50)
        .map(|_| {
            let (base, secret, started) = (p1.base.clone(), secret.clone(), started.clone());
            tokio::spawn(async move {
                let r = chat(&base, &secret, true).await.unwrap();
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            })
        })
        .collect();
    // Every stream has its answer's head (and is mid-body) before the SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(std::sync::atomic::Ordering::SeqCst) < 50 {
        assert!(Instant::now() < deadline, "the streams did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = p1.child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        chat(&p1.base, &secret, false).await.is_err(),
        "a stopping proxy takes no new connections"
    );
    assert_eq!(
        chat(&p2.base, &secret, false)
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(200),
        "the other proxy serves"
    );
    for stream in streams {
        let (status, body) = stream.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            body.trim_end().ends_with("data: [DONE]"),
            "a stream was cut: {body}"
        );
    }
    let exit = tokio::task::spawn_blocking(move || p1.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "proxy 1 exited {exit}");
    mantle.delay_chunks(Duration::ZERO);

    // 200 projects through alternating control planes; A is killed mid-reconcile.
    mantle.delay_creates(Duration::from_millis(20));
    let mut ids = vec![first];
    for i in 0..200 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        ids.push(create(base, &token, &project_body(&format!("multi-{i}"))).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while mantle.calls("CreateProject") < 41 {
        assert!(
            Instant::now() < deadline,
            "the reconcilers made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(a); // SIGKILL, mid-reconcile
    mantle.delay_creates(Duration::ZERO);
    wait_all_observed(&b.base, &token, &ids, Duration::from_secs(120)).await;
    assert_eq!(
        mantle.calls("CreateProject"),
        201,
        "each project's Mantle project made once, also across the kill"
    );
    let mut projects = Vec::new();
    for id in &ids {
        projects.push(observed(&b.base, &token, id).await);
    }
    assert_converged(&mantle, &ids, &projects).await;
    // Proxy 2 still serves, from control plane B.
    answers(&p2.base, &secret, 200, Duration::from_secs(5)).await;
}
