//! How long verifying a key the proxy has seen before takes (the per-request cost the
//! key cache promises to keep well under a microsecond). Run by `bench/proxy.sh`:
//!
//!   cargo run --release -p strata-proxy --example verify_cached
//!
//! A real control plane (SQLite, port 0) issues the key and serves the JWKS.

use std::time::Instant;

use serde_json::json;
use strata_proxy::KeyVerifier;
use strata_testkit::{TestApp, project_body};

const ROUNDS: u32 = 2_000_000;

#[tokio::main]
async fn main() {
    let app = TestApp::spawn().await;
    let project = app.create_project(&project_body("bench")).await;
    let id = project["id"].as_str().unwrap_or_default();
    let key = app
        .post(
            &format!("/api/v1/projects/{id}/keys"),
            &app.admin,
            &json!({"name": "bench"}),
        )
        .await;
    let secret = key.body["secret"].as_str().unwrap_or_default().to_owned();
    let keys = strata_testkit::test_keys_config();
    let verifier = KeyVerifier::new(
        reqwest::Client::new(),
        &app.url(""),
        &keys.key_issuer,
        &keys.proxy_audience,
    );
    let now = chrono::Utc::now().timestamp();
    let first = Instant::now();
    if let Err(e) = verifier.verify(&secret, now).await {
        eprintln!("the key did not verify: {e}");
        std::process::exit(1);
    }
    let first = first.elapsed();
    let started = Instant::now();
    let mut ok = 0u32;
    for _ in 0..ROUNDS {
        if verifier
            .verify(std::hint::black_box(&secret), now)
            .await
            .is_ok()
        {
            ok += 1;
        }
    }
    let per_call = started.elapsed() / ROUNDS;
    println!(
        "key verification: first (JWKS fetch + Ed25519) {:.1} ms; repeated {} ns per call over {ROUNDS} calls ({ok} ok; key {} bytes)",
        first.as_secs_f64() * 1000.0,
        per_call.as_nanos(),
        secret.len()
    );
}
