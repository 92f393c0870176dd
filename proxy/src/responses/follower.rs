//! Background responses followed to the end on the client's behalf: each replica
//! claims the unmetered ones (its own first, others' once their claims lapse), asks
//! Mantle how each is doing, and reports a finished one to the control plane, which
//! meters it exactly once. The replica that created a response holds its reservation
//! against the limits and settles it then; on shutdown it releases what it holds.

use std::time::Duration;

use serde::Deserialize;
use strata_contract::{ResponseClaim, ResponseCompletion, ResponseRecord, ServiceTier};
use tokio_util::sync::CancellationToken;

use crate::forward::{UpstreamCall, UpstreamPath, send_upstream};
use crate::limits::{Demand, Limits, Prices};
use crate::normalize::Usage;
use crate::state::ProxyState;

/// How often the follower asks after the responses it follows.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a claim holds without renewal (a replica that dies lets go after this).
const CLAIM_SECS: u64 = 30;
/// Responses followed per round.
const CLAIM_LIMIT: u64 = 50;

#[derive(Deserialize)]
struct Polled {
    status: Option<String>,
    usage: Option<serde_json::Value>,
    service_tier: Option<String>,
}

/// Statuses after which a response changes no more.
const FINISHED: [&str; 4] = ["completed", "failed", "cancelled", "incomplete"];

/// Runs until `stop`.
pub async fn follow_background(state: ProxyState, stop: CancellationToken) {
    let claim = ResponseClaim {
        owner: state.instance.clone(),
        limit: CLAIM_LIMIT,
        lease_secs: CLAIM_SECS,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
        let records = match state.responses.claim(&claim).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error.cause = %e, "cannot claim background responses");
                continue;
            }
        };
        for record in records {
            if stop.is_cancelled() {
                return;
            }
            follow_one(&state, &record).await;
        }
    }
}

async fn follow_one(state: &ProxyState, record: &ResponseRecord) {
    let Some(policy) = state.follower.current() else {
        return;
    };
    let Some(project) = policy.projects.get(&record.project_id) else {
        return;
    };
    let path = format!("/responses/{}", record.id);
    let call = UpstreamCall {
        method: reqwest::Method::GET,
        prefix: policy
            .models
            .get(record.model.as_str())
            .map(|m| m.mantle_path)
            .unwrap_or_default(),
        path: UpstreamPath::Dynamic(&path),
        body: axum::body::Bytes::new(),
        stream: false,
        headers: &[],
    };
    let completion = match send_upstream(state, project, call).await {
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => ResponseCompletion {
            // Deleted before it finished: what it used cannot be read any more.
            status: "gone".into(),
            ..ResponseCompletion::default()
        },
        Ok(r) if r.status().is_success() => {
            let Some(polled) = r
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Polled>(&b).ok())
            else {
                return;
            };
            let status = polled.status.unwrap_or_default();
            if !FINISHED.contains(&status.as_str()) {
                return;
            }
            let usage = polled
                .usage
                .as_ref()
                .and_then(Usage::from_json)
                .unwrap_or_default();
            ResponseCompletion {
                status,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_tokens: usage.cached_tokens,
                latency_ms: 0,
                service_tier: polled
                    .service_tier
                    .as_deref()
                    .map(ServiceTier::reported)
                    .unwrap_or_default(),
            }
        }
        Ok(r) => {
            tracing::debug!(response.id = %record.id, http.status = r.status().as_u16(), "Mantle did not answer a background response's status");
            return;
        }
        Err((kind, _)) => {
            tracing::debug!(response.id = %record.id, error.kind = kind, "cannot ask Mantle about a background response");
            return;
        }
    };
    let pending = state.take_pending(&record.id);
    let completion = ResponseCompletion {
        latency_ms: pending
            .as_ref()
            .map_or(0, |p| p.started.elapsed().as_millis() as u64),
        ..completion
    };
    match state.responses.complete(&record.id, &completion).await {
        Ok(applied) => {
            if applied {
                let m =
                    state
                        .metrics
                        .for_model(super::CREATE_ROUTE, record.project_id, &record.model);
                for (counter, n) in [
                    (&m.input_tokens, completion.input_tokens),
                    (&m.output_tokens, completion.output_tokens),
                    (&m.cached_tokens, completion.cached_tokens),
                ] {
                    if n > 0 {
                        counter.inc_by(n);
                    }
                }
            }
            let used = Usage {
                input_tokens: completion.input_tokens,
                output_tokens: completion.output_tokens,
                cached_tokens: completion.cached_tokens,
                cache_write_tokens: 0,
                service_tier: completion.service_tier,
            };
            let settle = |prices| Demand::used(prices, &used);
            match pending {
                Some(p) => {
                    if let Some(r) = p.reservation {
                        state.limiter.settle(r, settle(p.prices));
                    }
                }
                // Another replica created it (and held its reservation until it went).
                None if applied => {
                    let prices = policy
                        .models
                        .get(&record.model)
                        .map_or(Prices::default(), crate::limits::prices);
                    let limits = Limits::of(
                        project,
                        record.key_id,
                        None,
                        policy.budgets_for(project.id, record.key_id),
                    );
                    state.limiter.charge(&limits, settle(prices));
                }
                None => {}
            }
        }
        Err(e) => {
            tracing::warn!(response.id = %record.id, error.cause = %e, "cannot report a finished background response; will retry");
            if let Some(p) = pending {
                state.restore_pending(&record.id, p);
            }
        }
    }
}

/// On shutdown: gives back the reservations of the background responses this replica
/// was following (the replica that takes them over meters what they used).
pub async fn release_pending(state: &ProxyState) {
    for (_, pending) in state.drain_pending() {
        if let Some(r) = pending.reservation {
            state.limiter.release(r).await;
        }
    }
}
