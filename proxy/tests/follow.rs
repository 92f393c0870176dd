//! The proxy's verification and policy against the real control plane: keys from the
//! API verify offline, revocations and model changes arrive within a second, and the
//! proxy fails closed once the snapshot is older than its limit.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_core::config::Secret;
use strata_core::keys::ApiKeyClaims;
use strata_proxy::{Denial, KeyError, KeyVerifier, SnapshotFollower, allowed_models, authorize};
use strata_testkit::{TestApp, project_body};
use tokio_util::sync::CancellationToken;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn key(app: &TestApp, project: &str, body: Value) -> String {
    let r = app
        .post(
            &format!("/api/v1/projects/{project}/keys"),
            &app.admin,
            &body,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    r.body["secret"].as_str().unwrap_or_default().to_owned()
}

fn follower(app: &TestApp, max_staleness: Duration) -> Arc<SnapshotFollower> {
    Arc::new(SnapshotFollower::new(
        reqwest::Client::new(),
        &app.url(""),
        Secret::new(app.state.proxy_token.expose()),
        max_staleness,
    ))
}

/// Waits up to `within` for `check` to hold.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Whether the follower's policy refuses `claims` (for `model`) with `denial` within 1 s.
async fn denied_within_a_second(
    follower: &SnapshotFollower,
    claims: &ApiKeyClaims,
    model: Option<&str>,
    denial: Denial,
) -> bool {
    eventually(Duration::from_secs(1), || {
        follower
            .current()
            .is_some_and(|p| authorize(claims, &p, model).err() == Some(denial.clone()))
    })
    .await
    .is_some()
}

#[tokio::test]
async fn keys_verify_offline_once_and_forgeries_do_not() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("verified")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let secret = key(
        &app,
        &pid,
        json!({"name": "k", "models": ["openai.gpt-oss-20b"]}),
    )
    .await;
    let verifier = KeyVerifier::new(
        reqwest::Client::new(),
        &app.url(""),
        "strata",
        "strata-proxy",
    );

    let claims = verifier.verify(&secret, now()).await.unwrap();
    assert_eq!(claims.project.to_string(), pid);
    for _ in 0..100 {
        assert!(verifier.verify(&secret, now()).await.is_ok());
    }
    assert_eq!(verifier.cached(), 1, "a repeated key is a cache hit");
    // Past its expiry the cached key is refused, too.
    assert_eq!(
        verifier.verify(&secret, claims.exp).await.err(),
        Some(KeyError::Expired)
    );

    let mut forged = secret.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    assert!(matches!(
        verifier.verify(&forged, now()).await,
        Err(KeyError::Invalid(_))
    ));
    assert_eq!(
        verifier.verify("sk-other-123", now()).await.err(),
        Some(KeyError::Malformed)
    );
    let other_audience = KeyVerifier::new(
        reqwest::Client::new(),
        &app.url(""),
        "strata",
        "someone-else",
    );
    assert!(matches!(
        other_audience.verify(&secret, now()).await,
        Err(KeyError::Invalid(_))
    ));

    // A key signed after a rotation brings the new signing key in with one refetch.
    let verifier = KeyVerifier::new(
        reqwest::Client::new(),
        &app.url(""),
        "strata",
        "strata-proxy",
    );
    assert!(verifier.verify(&secret, now()).await.is_ok());
    app.state
        .key_issuer
        .rotate(&app.state.services.store, &strata_core::clock::SystemClock)
        .await
        .unwrap();
    let fresh = key(&app, &pid, json!({"name": "after-rotation"})).await;
    let later = KeyVerifier::new(
        reqwest::Client::new(),
        &app.url(""),
        "strata",
        "strata-proxy",
    );
    assert!(later.verify(&fresh, now()).await.is_ok());
    assert!(
        later.verify(&secret, now()).await.is_ok(),
        "the old key still verifies"
    );
}

#[tokio::test]
async fn the_snapshot_brings_revocations_and_model_changes_within_a_second() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("followed")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let all = key(&app, &pid, json!({"name": "all"})).await;
    let scoped = key(
        &app,
        &pid,
        json!({"name": "scoped", "models": ["openai.gpt-oss-20b"]}),
    )
    .await;
    let verifier = KeyVerifier::new(
        reqwest::Client::new(),
        &app.url(""),
        "strata",
        "strata-proxy",
    );
    let all = verifier.verify(&all, now()).await.unwrap();
    let scoped = verifier.verify(&scoped, now()).await.unwrap();

    let follower = follower(&app, Duration::from_secs(60));
    let stop = CancellationToken::new();
    tokio::spawn(follower.clone().run(stop.clone()));
    eventually(Duration::from_secs(5), || follower.current().is_some())
        .await
        .unwrap_or_else(|| panic!("no snapshot"));
    let policy = follower.current().unwrap_or_else(|| panic!("policy"));
    let project =
        authorize(&all, &policy, Some("openai.gpt-oss-120b")).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(allowed_models(&all, project).len(), 2);
    assert_eq!(allowed_models(&scoped, project).len(), 1);
    assert_eq!(
        authorize(&scoped, &policy, Some("openai.gpt-oss-120b")).err(),
        Some(Denial::ModelNotAllowed)
    );

    // The project drops a model: every key loses it.
    let r = app
        .patch(
            &format!("/api/v1/projects/{pid}"),
            &app.admin,
            &json!({"allowed_models": ["openai.gpt-oss-120b"]}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let arrived = denied_within_a_second(
        &follower,
        &all,
        Some("openai.gpt-oss-20b"),
        Denial::ModelNotAllowed,
    )
    .await;
    assert!(arrived, "the model change did not arrive within 1 s");
    let policy = follower.current().unwrap_or_else(|| panic!("policy"));
    assert_eq!(
        authorize(&scoped, &policy, Some("openai.gpt-oss-20b")).err(),
        Some(Denial::ModelNotAllowed),
        "the scoped key's one model is gone"
    );

    // A revocation.
    let r = app
        .post(
            &format!("/api/v1/projects/{pid}/keys/{}/revoke", all.sub),
            &app.admin,
            &json!({}),
        )
        .await;
    assert!(r.status.is_success());
    let arrived = denied_within_a_second(&follower, &all, None, Denial::KeyRevoked).await;
    assert!(arrived, "the revocation did not arrive within 1 s");

    // Archiving: 403 for every key of the project.
    app.post(
        &format!("/api/v1/projects/{pid}/archive"),
        &app.admin,
        &json!({}),
    )
    .await;
    let arrived = denied_within_a_second(&follower, &scoped, None, Denial::ProjectArchived).await;
    assert!(arrived, "the archive did not arrive within 1 s");
    stop.cancel();
}

#[tokio::test]
async fn without_the_control_plane_the_policy_goes_stale_and_the_proxy_fails_closed() {
    let app = TestApp::spawn().await;
    app.create_project(&project_body("lonely")).await;
    let follower = follower(&app, Duration::from_secs(1));
    assert!(
        follower.current().is_none(),
        "nothing before the first snapshot"
    );
    follower.poll_once(0).await.unwrap();
    assert!(follower.current().is_some());
    // A wrong credential is refused by the control plane.
    let impostor = SnapshotFollower::new(
        reqwest::Client::new(),
        &app.url(""),
        Secret::new("x".repeat(40)),
        Duration::from_secs(1),
    );
    assert!(matches!(
        impostor.poll_once(0).await,
        Err(strata_proxy::ControlPlaneError::Status(s)) if s.as_u16() == 401
    ));

    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        follower.poll_once(0).await.is_err(),
        "the control plane is gone"
    );
    assert!(
        follower.current().is_some(),
        "the last snapshot still serves"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        follower.current().is_none(),
        "past the staleness limit: fail closed"
    );
    assert!(follower.age().is_some_and(|a| a > Duration::from_secs(1)));
}

/// A fresh replica hit by many requests with a key it has not seen: the ones that
/// arrive while the JWKS is being fetched wait for it (they used to get 503
/// `keys_unavailable`, found by bench/proxy.sh's 1,000 streams).
#[tokio::test]
async fn concurrent_first_requests_wait_for_the_one_jwks_fetch() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("burst")).await;
    let pid = p["id"].as_str().unwrap_or_default().to_owned();
    let secret = key(&app, &pid, json!({"name": "k"})).await;
    let verifier = KeyVerifier::new(
        reqwest::Client::new(),
        &app.url(""),
        "strata",
        "strata-proxy",
    );
    let results =
        futures_util::future::join_all((0..200).map(|_| verifier.verify(&secret, now()))).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {:?}",
        failed.len(),
        failed.first()
    );
}
