//! The Responses API's limits through the proxy: a background response holds its
//! reservation until it finishes (then settles to what it used), and a proxy that
//! shuts down gives back what it held, on the Redis the replicas share.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use common::*;
use serde_json::{Value, json};
use strata_proxy::ProxyConfig;
use uuid::Uuid;

const OSS: &str = "openai.gpt-oss-20b";

impl World {
    /// A project that may use the Responses API, with `patch` applied, once the
    /// proxy's snapshot has it.
    async fn responses_project(&self, name: &str, patch: Value) -> (Uuid, String) {
        let (id, key) = self.project(name, &[OSS]).await;
        let mut body = patch;
        body["data_retention"] = json!("standard");
        let r = self
            .app
            .patch(&format!("/api/v1/projects/{id}"), &self.app.admin, &body)
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        // The Mantle project's retention mode follows (none -> default).
        self.reconcile(id).await;
        let started = Instant::now();
        while !self.proxy.follower.current().is_some_and(|p| {
            p.projects.get(&id).is_some_and(|p| {
                p.data_retention == strata_core::domain::DataRetention::Standard
                    && p.rate_limits.tpm == r.body["rate_limits"]["tpm"].as_u64()
                    && p.monthly_budget_usd == r.body["monthly_budget_usd"].as_f64()
            })
        }) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the proxy never saw the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (id, key)
    }

    async fn create_response(&self, key: &str, body: &Value) -> (u64, Value) {
        let r = self
            .client
            .post(format!("{}/v1/responses", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let remaining = r
            .headers()
            .get("x-ratelimit-remaining-tokens")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no x-ratelimit-remaining-tokens"));
        (remaining, r.json().await.unwrap_or_default())
    }
}

fn tokens(body: &Value) -> u64 {
    body["usage"]["total_tokens"].as_u64().unwrap_or_default()
}

#[tokio::test]
async fn a_background_response_holds_its_reservation_until_it_finishes() {
    let w = world().await;
    let (_, key) = w
        .responses_project(
            "bg-hold",
            json!({"rate_limits": {"rpm": null, "tpm": 100000}, "monthly_budget_usd": null}),
        )
        .await;
    if Utc::now().second() >= 45 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - Utc::now().second()))).await;
    }
    w.mantle.delay_background(Duration::from_millis(1500));
    let body = |text: &str, background: bool, max: u64| json!({"model": OSS, "input": text, "background": background, "max_output_tokens": max});
    let (after_background, queued) = w.create_response(&key, &body("slow one", true, 5000)).await;
    assert_eq!(queued["status"], "queued");
    let reserved = 100_000 - after_background;
    assert!(
        reserved > 5000,
        "input estimate plus max_output_tokens: {reserved}"
    );
    // While it runs, its whole reservation stays counted.
    let (after_plain, plain) = w.create_response(&key, &body("quick", false, 10)).await;
    let plain_reserved = after_background - after_plain;
    assert!(plain_reserved < 100, "{plain_reserved}");
    // The follower meters it when it finishes, and settles the reservation.
    let response_id = queued["id"].as_str().unwrap_or_default().to_owned();
    let started = Instant::now();
    loop {
        let record = w
            .client
            .get(
                w.app
                    .url(&format!("/internal/v1/proxy/responses/{response_id}")),
            )
            .bearer_auth(w.app.state.proxy_token.expose())
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap_or_default();
        if record["metered"] == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never metered: {record}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let background_used = w.mantle.responses_stats().output_tokens
        + w.mantle.responses_stats().input_tokens
        - tokens(&plain);
    let (after_third, _) = w.create_response(&key, &body("quick", false, 10)).await;
    assert_eq!(
        100_000 - after_third,
        background_used + tokens(&plain) + plain_reserved,
        "both settled to what they used; the third reserved"
    );
}

#[tokio::test]
async fn a_proxy_that_stops_gives_back_the_background_reservations_it_held() {
    let redis_url =
        std::env::var("STRATA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("strata-test-{}", Uuid::now_v7());
    let mut w = world_with(ProxyConfig {
        redis_url: Some(strata_core::config::Secret::new(redis_url.clone())),
        redis_key_prefix: prefix.clone(),
        ..ProxyConfig::default()
    })
    .await;
    let (id, key) = w
        .responses_project(
            "bg-release",
            json!({"rate_limits": {"rpm": null, "tpm": null}, "monthly_budget_usd": 100.0}),
        )
        .await;
    w.mantle.delay_background(Duration::from_secs(600));
    let (_, queued) = {
        let r = w
            .client
            .post(format!("{}/v1/responses", w.base))
            .bearer_auth(&key)
            .json(&json!({"model": OSS, "input": "long job", "background": true, "max_output_tokens": 100000}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ((), r.json::<Value>().await.unwrap_or_default())
    };
    assert_eq!(queued["status"], "queued");
    let budget_key = format!("{prefix}:{{{id}}}:budget:{}", Utc::now().format("%Y-%m"));
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let held: i64 = redis::cmd("GET")
        .arg(&budget_key)
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{budget_key}: {e}"));
    // 100,000 output tokens at $0.30 per million, and a little input.
    assert!(held >= 30_000, "reserved while it runs: {held}");
    w.stop_proxy().await;
    let after: i64 = redis::cmd("GET")
        .arg(&budget_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        after, 0,
        "released on shutdown (the next follower meters the response)"
    );
}

#[tokio::test]
async fn mantle_checks_each_routes_iam_action_against_the_role_and_strata_grants_them() {
    let w = world().await;
    let (id, key) = w.responses_project("iam-actions", json!({})).await;
    let input = json!({"model": OSS, "input": "hello"});
    let (_, created) = w.create_response(&key, &input).await;
    let response_id = created["id"].as_str().unwrap_or_default().to_owned();
    let retrieve = || {
        w.send(
            w.client
                .get(format!("{}/v1/responses/{response_id}", w.base))
                .bearer_auth(&key),
        )
    };
    assert_eq!(
        retrieve().await.status,
        200,
        "the rendered policy grants GetInference"
    );

    // A role that may only create (strata's policy before it followed the route
    // table): Mantle refuses the retrieve, the proxy says so without AWS's details.
    w.narrow_role_policy(id, &["bedrock-mantle:CreateInference"])
        .await;
    let denied = retrieve().await;
    assert_error(&denied, 502, "upstream_denied");
    assert_eq!(
        w.mantle.calls("AccessDenied:bedrock-mantle:GetInference"),
        1
    );
    let delete = w
        .send(
            w.client
                .delete(format!("{}/v1/responses/{response_id}", w.base))
                .bearer_auth(&key),
        )
        .await;
    assert_error(&delete, 502, "upstream_denied");
    assert_eq!(
        w.mantle
            .calls("AccessDenied:bedrock-mantle:DeleteInference"),
        1
    );
    // Creating still works: that action is still granted.
    w.create_response(&key, &input).await;

    // The next reconcile pass repairs the policy from the route table.
    w.reconcile(id).await;
    assert_eq!(
        retrieve().await.status,
        200,
        "the repaired policy grants it again"
    );
}

#[tokio::test]
async fn a_zero_data_retention_project_gets_unstored_responses_only() {
    let w = world().await;
    let (_, key) = w.project("zdr-responses", &[OSS]).await; // zdr by default
    let create = |body: Value| {
        w.send(
            w.client
                .post(format!("{}/v1/responses", w.base))
                .bearer_auth(&key)
                .json(&body),
        )
    };
    let ok = create(json!({"model": OSS, "input": "hi", "store": false})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = create(json!({"model": OSS, "input": "hi"})).await;
    assert_eq!(ok.status, 200, "store defaults to false under mode none");
    for (extra, param) in [
        (json!({"store": true}), "store"),
        (json!({"background": true}), "background"),
    ] {
        let mut body = json!({"model": OSS, "input": "hi"});
        body.as_object_mut()
            .into_iter()
            .for_each(|o| o.extend(extra.as_object().cloned().unwrap_or_default()));
        let refused = create(body).await;
        assert_error(&refused, 400, "zero_data_retention");
        assert_eq!(refused.body["error"]["param"], param);
    }
    let stats = w.mantle.responses_stats();
    assert_eq!(stats.created, 2, "the refused ones never reached Mantle");
    assert_eq!(stats.retention_refused, 0);
}

#[tokio::test]
async fn a_model_served_under_openai_v1_is_called_there_on_every_route() {
    let w = world().await;
    let frontier = "openai.gpt-5.5";
    let entry = json!({
        "provider": "openai", "display_name": "GPT-5.5", "supports_chat": false, "supports_responses": true,
        "supports_streaming": true, "regions": ["us-east-1"], "mantle_path": "/openai/v1",
        "input_price_per_mtok_usd": 5, "output_price_per_mtok_usd": 30
    });
    let put = w
        .app
        .put(&format!("/api/v1/models/{frontier}"), &w.app.admin, &entry)
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(put.body["mantle_path"], "/openai/v1");
    let (id, key) = w.project("frontier", &[OSS, frontier]).await;
    let r = w
        .app
        .patch(
            &format!("/api/v1/projects/{id}"),
            &w.app.admin,
            &json!({"data_retention": "standard"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    w.reconcile(id).await;
    answers_within(
        Duration::from_secs(5),
        reqwest::StatusCode::OK,
        "standard retention",
        || {
            w.send(
                w.client
                    .post(format!("{}/v1/responses", w.base))
                    .bearer_auth(&key)
                    .json(&json!({"model": frontier, "input": "hi", "store": true})),
            )
        },
    )
    .await;
    // The same client calls reach the frontier model under /openai/v1 and the
    // GPT-OSS model under /v1 (the fake refuses either on the other prefix).
    for model in [frontier, OSS] {
        let created = w
            .send(
                w.client
                    .post(format!("{}/v1/responses", w.base))
                    .bearer_auth(&key)
                    .json(&json!({"model": model, "input": "hello"})),
            )
            .await;
        assert_eq!(created.status, 200, "{model}: {}", created.body);
        let rid = created.body["id"].as_str().unwrap_or_default().to_owned();
        for (method, suffix) in [
            (reqwest::Method::GET, ""),
            (reqwest::Method::GET, "/input_items"),
            (reqwest::Method::DELETE, ""),
        ] {
            let a = w
                .send(
                    w.client
                        .request(
                            method.clone(),
                            format!("{}/v1/responses/{rid}{suffix}", w.base),
                        )
                        .bearer_auth(&key),
                )
                .await;
            assert_eq!(a.status, 200, "{model} {method} {suffix}: {}", a.body);
        }
    }
    let models = w
        .send(
            w.client
                .get(format!("{}/v1/models", w.base))
                .bearer_auth(&key),
        )
        .await;
    let ids: Vec<&str> = models.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&frontier) && ids.contains(&OSS),
        "{}",
        models.body
    );
}

/// Creates at the same time share the control-plane request that records their
/// owners; each id is usable (by its own project only) as soon as its create has
/// answered, and the control plane has it a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_record_their_owners_in_groups() {
    let w = world().await;
    let (mine, key) = w.responses_project("grouped", json!({})).await;
    let (_, other) = w.responses_project("grouped-other", json!({})).await;
    let creates = (0..40).map(|i| {
        let request = w
            .client
            .post(format!("{}/v1/responses", w.base))
            .bearer_auth(&key)
            .json(&json!({"model": OSS, "input": format!("hi {i}")}));
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        }
    });
    let ids = futures_util::future::join_all(creates).await;
    let r = w
        .send(
            w.client
                .get(format!("{}/v1/responses/{}", w.base, ids[39]))
                .bearer_auth(&key),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = w.app.state.proxy_token.expose().to_owned();
    for id in &ids {
        let started = Instant::now();
        loop {
            let r = w
                .app
                .get(&format!("/internal/v1/proxy/responses/{id}"), &token)
                .await;
            if r.status == 200 {
                assert_eq!(r.body["project_id"], mine.to_string(), "{id}: {}", r.body);
                break;
            }
            assert!(
                r.status == 404 && started.elapsed() < Duration::from_secs(3),
                "{id}: {} {}",
                r.status,
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Another project's key cannot read them.
    let r = w
        .send(
            w.client
                .get(format!("{}/v1/responses/{}", w.base, ids[0]))
                .bearer_auth(&other),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let metrics = w
        .client
        .get(w.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let groups: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("strata_http_requests_total{")
                && l.contains(r#"route="/internal/v1/proxy/responses/batch""#)
                && l.contains(r#"status="204""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_default();
    assert!(
        (1..40).contains(&groups),
        "40 creates recorded in {groups} requests"
    );
    // Every record has landed: the proxy's queue empties once it hears so.
    let started = Instant::now();
    loop {
        let proxy_metrics = w.proxy_metrics().await;
        let unsent = proxy_metrics
            .lines()
            .find_map(|l| l.strip_prefix("strata_proxy_response_records_unsent "))
            .unwrap_or_else(|| panic!("no gauge of unsent records: {proxy_metrics}"));
        if unsent == "0" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{unsent} unsent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An unstored response (`store: false`) can never be read or continued, so the proxy
/// records no owner for it, plain or streamed; a stored one after them is recorded.
#[tokio::test]
async fn an_unstored_response_records_no_owner() {
    let w = world().await;
    let (mine, key) = w.responses_project("unstored", json!({})).await;
    let create = |body: Value| {
        w.client
            .post(format!("{}/v1/responses", w.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let plain: Value = create(json!({"model": OSS, "input": "hi", "store": false}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let streamed = create(json!({"model": OSS, "input": "hi", "store": false, "stream": true}))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let streamed_id = streamed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.strip_prefix("data: ")?).ok())
        .find_map(|e| Some(e["response"]["id"].as_str()?.to_owned()))
        .unwrap_or_else(|| panic!("no id in {streamed}"));
    let stored: Value = create(json!({"model": OSS, "input": "hi"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = w.app.state.proxy_token.expose().to_owned();
    let at_control_plane = |id: String| {
        let (app, token) = (&w.app, &token);
        async move {
            app.get(&format!("/internal/v1/proxy/responses/{id}"), token)
                .await
        }
    };
    // Records go in order: once the stored one is there, the others would be too.
    let started = Instant::now();
    loop {
        let r = at_control_plane(stored["id"].as_str().unwrap().to_owned()).await;
        if r.status == 200 {
            assert_eq!(r.body["project_id"], mine.to_string());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in [plain["id"].as_str().unwrap().to_owned(), streamed_id] {
        assert_eq!(
            at_control_plane(id.clone()).await.status,
            404,
            "{id} recorded"
        );
        let r = w
            .send(
                w.client
                    .get(format!("{}/v1/responses/{id}", w.base))
                    .bearer_auth(&key),
            )
            .await;
        assert_eq!(r.status, 404, "{}", r.body);
    }
}

/// A second proxy following the world's control plane and Mantle, with `config`, once
/// its snapshot has `projects`.
async fn second_replica(
    w: &World,
    config: ProxyConfig,
    projects: &[Uuid],
) -> (String, tokio_util::sync::CancellationToken) {
    let (proxy, base, shutdown, _) = start_proxy(
        &w.app.url(""),
        w.app.state.proxy_token.clone(),
        &w.mantle,
        config,
    )
    .await;
    let started = Instant::now();
    while !proxy
        .follower
        .current()
        .is_some_and(|p| projects.iter().all(|id| p.projects.contains_key(id)))
    {
        assert!(started.elapsed() < Duration::from_secs(5), "no snapshot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (base, shutdown)
}

/// A new response's id, created through the world's proxy.
async fn create(w: &World, key: &str) -> String {
    let r = w
        .send(
            w.client
                .post(format!("{}/v1/responses", w.base))
                .bearer_auth(key)
                .json(&json!({"model": OSS, "input": "hi"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

/// Reads response `id` through the proxy at `base` with `key`, and continues it.
async fn read_and_continue(w: &World, base: &str, key: &str, id: &str) -> (u16, u16) {
    let read = w
        .send(
            w.client
                .get(format!("{base}/v1/responses/{id}"))
                .bearer_auth(key),
        )
        .await;
    let next = w
        .send(
            w.client
                .post(format!("{base}/v1/responses"))
                .bearer_auth(key)
                .json(&json!({"model": OSS, "input": "more", "previous_response_id": id})),
        )
        .await;
    (read.status.as_u16(), next.status.as_u16())
}

/// Without Redis the control plane learns an owner a few milliseconds after the create
/// answers: another replica asked at once looks again before it says 404, so the id
/// works there straight away, and still only for its own project.
#[tokio::test]
async fn an_id_fresh_from_one_replica_works_at_once_on_another_without_redis() {
    let w = world().await;
    let (mine, key) = w.responses_project("fresh-a", json!({})).await;
    let (theirs, other) = w.responses_project("fresh-b", json!({})).await;
    let (b, _stop) = second_replica(&w, ProxyConfig::default(), &[mine, theirs]).await;
    // Both keys verified on B already, so nothing but the owner is looked up below.
    for k in [&key, &other] {
        let r = w
            .send(w.client.get(format!("{b}/v1/models")).bearer_auth(k))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let id = &create(&w, &key).await;
    assert_eq!(read_and_continue(&w, &b, &key, id).await, (200, 200));
    assert_eq!(read_and_continue(&w, &b, &other, id).await, (404, 404));
}

/// With Redis the owner is written there a moment after the create answers (off its
/// path), as a field of the ten-minute bucket's hash that is kept at least an hour,
/// and every replica sharing it serves the id to its project.
#[tokio::test]
async fn with_redis_a_new_owner_reaches_redis_and_every_replica() {
    let redis_url =
        std::env::var("STRATA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("strata-test-{}", Uuid::now_v7());
    let config = || ProxyConfig {
        redis_url: Some(strata_core::config::Secret::new(redis_url.clone())),
        redis_key_prefix: prefix.clone(),
        ..ProxyConfig::default()
    };
    let w = world_with(config()).await;
    let (mine, key) = w.responses_project("shared-a", json!({})).await;
    let (theirs, other) = w.responses_project("shared-b", json!({})).await;
    let (b, _stop) = second_replica(&w, config(), &[mine, theirs]).await;
    let id = &create(&w, &key).await;
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let started = Instant::now();
    let bucket = 'written: loop {
        let buckets: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:responses:*"))
            .query_async(&mut redis)
            .await
            .unwrap();
        for bucket in buckets {
            let owner: Option<String> = redis::cmd("HGET")
                .arg(&bucket)
                .arg(id)
                .query_async(&mut redis)
                .await
                .unwrap();
            if let Some(owner) = owner {
                assert_eq!(owner, format!("{mine} {OSS}"));
                break 'written bucket;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(3), "never in Redis");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let ttl: i64 = redis::cmd("TTL")
        .arg(&bucket)
        .query_async(&mut redis)
        .await
        .unwrap();
    // An hour after the bucket's ten minutes end, and five minutes' slack.
    assert!(
        (3600..=3600 + 600 + 300).contains(&ttl),
        "kept an hour, for the control plane's copy to land: {ttl}"
    );
    assert_eq!(read_and_continue(&w, &b, &key, id).await, (200, 200));
    assert_eq!(read_and_continue(&w, &b, &other, id).await, (404, 404));
}
