//! Rate limits and budgets through the proxy as a client sees them: 429s in OpenAI's
//! words with `retry-after` and `x-ratelimit-*`, the key's own limits beside the
//! project's, the budget counter starting from the control plane's metered spend, and
//! the threshold events the control plane records.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::{Value, json};
use uuid::Uuid;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

impl World {
    async fn limit_project(&self, id: Uuid, patch: Value) {
        let r = self
            .app
            .patch(&format!("/api/v1/projects/{id}"), &self.app.admin, &patch)
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        // Wait until the proxy's snapshot has the change.
        let rpm = r.body["rate_limits"]["rpm"].as_u64();
        let tpm = r.body["rate_limits"]["tpm"].as_u64();
        let budget = r.body["monthly_budget_usd"].as_f64();
        let started = std::time::Instant::now();
        while !self.proxy.follower.current().is_some_and(|p| {
            p.projects.get(&id).is_some_and(|p| {
                p.rate_limits.rpm == rpm
                    && p.rate_limits.tpm == tpm
                    && p.monthly_budget_usd == budget
            })
        }) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the proxy never saw the limits"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Usage another proxy sent: `output_tokens` of the model on a key of its own.
    async fn usage_from_another_proxy(&self, project: Uuid, output_tokens: u64) {
        let batch = json!({"batch_id": Uuid::now_v7(), "records": [{
            "project_id": project, "key_id": Uuid::now_v7(), "model": OSS, "minute": Utc::now(),
            "requests": 1, "output_tokens": output_tokens}]});
        let r = self
            .client
            .post(self.app.url("/internal/v1/proxy/usage"))
            .bearer_auth(self.app.state.proxy_token.expose())
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// The project's budget status and the thresholds its events name.
    async fn budget(&self, project: Uuid) -> (Value, Vec<i64>) {
        let status = self
            .app
            .get(
                &format!("/api/v1/projects/{project}/budget"),
                &self.app.admin,
            )
            .await
            .body;
        let thresholds = status["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["threshold_percent"].as_i64())
            .collect();
        (status, thresholds)
    }

    /// Waits until the proxy's snapshot has (or no longer has) hard budgets over
    /// `project`.
    async fn wait_for_budgets(&self, project: Uuid, present: bool) {
        let started = std::time::Instant::now();
        while self
            .proxy
            .follower
            .current()
            .is_some_and(|p| p.project_budgets.contains_key(&project))
            != present
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the proxy never saw the budget's change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn post_chat(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

const OSS: &str = "openai.gpt-oss-20b";

#[tokio::test]
async fn requests_per_minute_give_429s_with_openai_headers() {
    let w = world().await;
    let (id, key) = w.project("rpm", &[OSS]).await;
    w.limit_project(id, json!({"rate_limits": {"rpm": 2, "tpm": null}}))
        .await;
    clear_of_the_minute_end().await;
    for remaining in ["1", "0"] {
        let r = w.post_chat(&key, &hello(OSS)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            Some(remaining)
        );
        assert!(header(&r, "x-ratelimit-reset-requests").is_some_and(|v| v.ends_with('s')));
        assert_eq!(
            header(&r, "x-ratelimit-limit-tokens"),
            None,
            "no token limit set"
        );
    }
    let r = w.post_chat(&key, &hello(OSS)).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = header(&r, "retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(header(&r, "x-should-retry"), None, "the SDK may retry it");
    let a = Answer {
        status: r.status(),
        request_id: header(&r, "x-request-id").map(str::to_owned),
        body: r.json().await.unwrap_or_default(),
    };
    assert_error(&a, 429, "rate_limit_exceeded");
    assert_eq!(a.body["error"]["type"], "requests");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("this project's requests per minute: limit 2")),
        "{}",
        a.body
    );
    // Only two requests reached Mantle; the refusal is in the metrics.
    assert_eq!(w.mantle.chat_stats().calls, 2);
    let metrics = w.proxy_metrics().await;
    assert!(
        metrics.contains(&format!(
            "strata_proxy_rate_limited_total{{project=\"{id}\",kind=\"requests\"}} 1"
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_keys_own_limits_apply_beside_the_projects() {
    let w = world().await;
    let (id, open_key) = w.project("key-rpm", &[OSS]).await;
    let limited = w
        .key(
            id,
            json!({"name": "limited", "rate_limits": {"rpm": 1, "tpm": 100000}}),
        )
        .await;
    // The key's limits are shown with its metadata.
    let keys = w
        .app
        .get(&format!("/api/v1/projects/{id}/keys"), &w.app.admin)
        .await;
    let shown: Vec<Value> = keys.body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|k| k["rate_limits"].clone())
        .collect();
    assert!(
        shown.contains(&json!({"rpm": 1, "tpm": 100000})),
        "{}",
        keys.body
    );
    clear_of_the_minute_end().await;
    let first = w.post_chat(&limited, &hello(OSS)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), Some("100000"));
    let second = w.post_chat(&limited, &hello(OSS)).await;
    assert_eq!(second.status(), 429);
    let body: Value = second.json().await.unwrap_or_default();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("this key's requests per minute")),
        "{body}"
    );
    // The project has no limit: its other keys go on.
    assert_eq!(w.post_chat(&open_key, &hello(OSS)).await.status(), 200);
    // A key's limits are validated like the project's.
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{id}/keys"),
            &w.app.admin,
            &json!({"name": "bad", "rate_limits": {"rpm": 0}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
}

#[tokio::test]
async fn a_request_larger_than_the_token_limit_is_refused_for_good() {
    let w = world().await;
    let (id, key) = w.project("tpm", &[OSS]).await;
    w.limit_project(id, json!({"rate_limits": {"rpm": null, "tpm": 1000}}))
        .await;
    let mut body = hello(OSS);
    body["max_tokens"] = json!(5000);
    let r = w.post_chat(&key, &body).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    let body: Value = r.json().await.unwrap_or_default();
    assert_eq!(body["error"]["type"], "tokens");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Request too large")),
        "{body}"
    );
    // Without max_tokens the default (4,096) is reserved: also too large.
    assert_eq!(w.post_chat(&key, &hello(OSS)).await.status(), 429);
    // A small max_tokens fits, and the reservation is settled to the real count.
    let mut small = hello(OSS);
    small["max_tokens"] = json!(50);
    clear_of_the_minute_end().await;
    let r = w.post_chat(&key, &small).await;
    assert_eq!(r.status(), 200);
    let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(
        remaining < 1000 - 50,
        "reserved input and output: {remaining}"
    );
    let used = r.json::<Value>().await.unwrap_or_default()["usage"]["total_tokens"]
        .as_u64()
        .unwrap_or_default();
    // Settlement happens just after the answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = w.post_chat(&key, &small).await;
    assert_eq!(r.status(), 200);
    let after: u64 = header(&r, "x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    // The first request now counts what it used; the second its reservation.
    assert_eq!(
        after,
        remaining - used,
        "settled: {remaining} then {after}, used {used}"
    );
}

#[tokio::test]
async fn the_budget_starts_from_metered_spend_and_crossings_are_recorded() {
    let w = world().await;
    let (id, key) = w.project("budget", &[OSS]).await;
    // $0.01 budget; 0.8 cents already spent this month (usage another proxy sent).
    w.limit_project(
        id,
        json!({"monthly_budget_usd": 0.01, "rate_limits": {"rpm": null, "tpm": null}}),
    )
    .await;
    // 24,000 output tokens at $0.30 per million: 7,200 micro-dollars.
    w.usage_from_another_proxy(id, 24_000).await;
    let (status, thresholds) = w.budget(id).await;
    assert_eq!(status["spent_micros"], 7200, "{status}");
    assert_eq!(thresholds, [50], "{status}");
    // The proxy's counter starts at 7,200: a request that could cost more than the
    // 2,800 left is refused; a small one fits.
    let mut big = hello(OSS);
    big["max_tokens"] = json!(10_000); // up to 3,000 micro-dollars of output
    let r = w.post_chat(&key, &big).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    let body: Value = r.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    let mut small = hello(OSS);
    small["max_tokens"] = json!(100);
    assert_eq!(w.post_chat(&key, &small).await.status(), 200);
    // Spend recorded by the control plane reaches 80 % and 100 %: recorded once each.
    for _ in 0..2 {
        w.usage_from_another_proxy(id, 10_000).await;
    }
    let (status, thresholds) = w.budget(id).await;
    assert_eq!(thresholds, [50, 80, 100], "{status}");
    assert!(status["percent_used"].as_f64().is_some_and(|p| p >= 100.0));
}

#[tokio::test]
async fn a_hard_team_budget_holds_across_its_projects_until_deleted() {
    let w = world().await;
    let (first, _) = w.project("team-a", &[OSS]).await;
    let (second, key) = w.project("team-b", &[OSS]).await;
    for id in [first, second] {
        w.limit_project(
            id,
            json!({"monthly_budget_usd": 100.0, "rate_limits": {"rpm": null, "tpm": null}}),
        )
        .await;
    }
    // 7,200 micro-dollars spent this week by the first project (another proxy's usage).
    w.usage_from_another_proxy(first, 24_000).await;
    let r = w
        .app
        .post(
            "/api/v1/budgets",
            &w.app.admin,
            &json!({"name": "payments-weekly", "scope": "team", "target": "payments",
                    "period": "week", "amount_usd": 0.01, "enforcement": "hard"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["enforcement"], "hard", "{}", r.body);
    let budget = r.body["id"].as_str().unwrap().to_owned();
    w.wait_for_budgets(second, true).await;
    // The second project's request could take the team past its budget: refused, the
    // budget named; a small one fits in the 2,800 left.
    let mut big = hello(OSS);
    big["max_tokens"] = json!(10_000);
    let r = w.post_chat(&key, &big).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    let retry_after: u64 = header(&r, "retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(
        (1..=7 * 86_400).contains(&retry_after),
        "until the week ends: {retry_after}"
    );
    let body: Value = r.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the team 'payments' budget 'payments-weekly'"),
        "{message}"
    );
    let mut small = hello(OSS);
    small["max_tokens"] = json!(100);
    assert_eq!(w.post_chat(&key, &small).await.status(), 200);
    // A soft budget would not refuse: deleting the hard one lifts the limit.
    let r = w
        .app
        .delete(&format!("/api/v1/budgets/{budget}"), &w.app.admin)
        .await;
    assert_eq!(r.status, 204);
    w.wait_for_budgets(second, false).await;
    assert_eq!(w.post_chat(&key, &big).await.status(), 200);
}
