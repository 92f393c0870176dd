//! The limit stores decide alike: the same scenarios run against this process's
//! memory and against Redis (the machine's, or STRATA_TEST_REDIS_URL; a missing Redis
//! fails the test with how to start one). Two `RedisStore`s on one Redis stand for two
//! proxy replicas.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use strata_core::domain::RateLimits;
use strata_proxy::{Demand, Limit, LimitStore, Limits, LocalStore, RedisStore, Reserved, Window};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("STRATA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis store with its own key prefix (tests share one Redis), after checking that
/// Redis answers.
async fn redis_store(prefix: &str) -> RedisStore {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).unwrap();
    let ping = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    if let Err(e) = tokio::time::timeout(std::time::Duration::from_secs(3), ping)
        .await
        .unwrap_or_else(|_| panic!("Redis at {url} did not answer"))
    {
        panic!(
            "no Redis at {url} ({e}): start one (redis-server --port 6379 --save '') or set STRATA_TEST_REDIS_URL; scripts/test does this"
        );
    }
    RedisStore::new(&url, prefix).unwrap()
}

/// Two handles on one store: the same `LocalStore` twice, or two Redis clients.
async fn stores(kind: &str) -> [Arc<dyn LimitStore>; 2] {
    match kind {
        "memory" => {
            let local: Arc<dyn LimitStore> = Arc::new(LocalStore::new());
            [local.clone(), local]
        }
        _ => {
            let prefix = format!("strata-test-{}", Uuid::now_v7());
            [
                Arc::new(redis_store(&prefix).await),
                Arc::new(redis_store(&prefix).await),
            ]
        }
    }
}

fn limits(project_rate: RateLimits, key_rate: RateLimits, budget: Option<i64>) -> Limits {
    Limits {
        project: Uuid::now_v7(),
        key: Uuid::now_v7(),
        project_rate,
        key_rate,
        budget_micros: budget,
    }
}

fn rate(rpm: Option<u64>, tpm: Option<u64>) -> RateLimits {
    RateLimits { rpm, tpm }
}

fn window(minute: u32) -> Window {
    Window::at(
        Utc.with_ymd_and_hms(2026, 11, 27, 10, minute, 30)
            .single()
            .unwrap_or_else(|| panic!("a valid time")),
    )
}

fn demand(tokens: u64, cost_micros: i64) -> Demand {
    Demand {
        tokens,
        cost_micros,
    }
}

async fn reserve(store: &Arc<dyn LimitStore>, w: &Window, l: &Limits, d: Demand) -> Reserved {
    store.reserve(w, l, d, Some(0)).await.unwrap()
}

fn refused_by(r: &Reserved) -> Option<Limit> {
    match r {
        Reserved::Refused(limit, _) => Some(*limit),
        _ => None,
    }
}

async fn requests_per_minute_per_project_and_per_key(kind: &str) {
    let [a, b] = stores(kind).await;
    let w = window(1);
    // The key's own limit is tighter than the project's.
    let key_limited = limits(rate(Some(3), None), rate(Some(2), None), None);
    for store in [&a, &b] {
        assert!(matches!(
            reserve(store, &w, &key_limited, demand(10, 0)).await,
            Reserved::Admitted(_)
        ));
    }
    let third = reserve(&a, &w, &key_limited, demand(10, 0)).await;
    assert_eq!(refused_by(&third), Some(Limit::KeyRequests), "{kind}");
    // Another key of the same project has the project's last request.
    let other_key = Limits {
        key: Uuid::now_v7(),
        ..key_limited
    };
    match reserve(&b, &w, &other_key, demand(10, 0)).await {
        Reserved::Admitted(c) => assert_eq!(c.rates[0], 3, "{kind}: the project's count"),
        r => panic!("{kind}: {r:?}"),
    }
    let fourth = reserve(&b, &w, &other_key, demand(10, 0)).await;
    assert_eq!(refused_by(&fourth), Some(Limit::ProjectRequests), "{kind}");
    // A new minute starts from zero.
    let next = window(2);
    assert!(matches!(
        reserve(&a, &next, &key_limited, demand(10, 0)).await,
        Reserved::Admitted(_)
    ));
}

async fn tokens_are_reserved_then_settled(kind: &str) {
    let [a, b] = stores(kind).await;
    let w = window(3);
    let l = limits(rate(None, Some(1_000)), RateLimits::default(), None);
    assert!(matches!(
        reserve(&a, &w, &l, demand(600, 0)).await,
        Reserved::Admitted(_)
    ));
    let r = reserve(&b, &w, &l, demand(600, 0)).await;
    assert_eq!(refused_by(&r), Some(Limit::ProjectTokens), "{kind}");
    match r {
        Reserved::Refused(_, c) => assert_eq!(c.rates[1], 600, "{kind}: nothing counted"),
        _ => unreachable!(),
    }
    // The first request used 100 of its 600: the rest is free again.
    a.settle(&w, &l, -500, 0).await.unwrap();
    match reserve(&b, &w, &l, demand(600, 0)).await {
        Reserved::Admitted(c) => assert_eq!(c.rates[1], 700, "{kind}"),
        r => panic!("{kind}: {r:?}"),
    }
}

async fn budgets_start_from_a_baseline_and_never_overshoot(kind: &str) {
    let [a, b] = stores(kind).await;
    let w = window(4);
    let l = limits(RateLimits::default(), RateLimits::default(), Some(10_000));
    // No counter for the month yet: the store asks for the control plane's figure.
    let first = a.reserve(&w, &l, demand(1, 100), None).await.unwrap();
    assert_eq!(first, Reserved::NeedsBaseline, "{kind}");
    let started = a
        .reserve(&w, &l, demand(1, 1_000), Some(8_000))
        .await
        .unwrap();
    match started {
        Reserved::Admitted(c) => assert_eq!(c.spent_micros, 9_000, "{kind}"),
        r => panic!("{kind}: {r:?}"),
    }
    // The other replica sees the counter, and a later baseline does not reset it.
    let over = b.reserve(&w, &l, demand(1, 1_001), Some(0)).await.unwrap();
    assert_eq!(refused_by(&over), Some(Limit::Budget), "{kind}");
    assert!(matches!(
        reserve(&b, &w, &l, demand(1, 1_000)).await,
        Reserved::Admitted(_)
    ));
    // Settling a request that cost less than reserved frees the difference.
    b.settle(&w, &l, 0, -400).await.unwrap();
    match reserve(&a, &w, &l, demand(1, 400)).await {
        Reserved::Admitted(c) => assert_eq!(c.spent_micros, 10_000, "{kind}"),
        r => panic!("{kind}: {r:?}"),
    }
    // Another month is another counter.
    let december = Window::at(
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 1)
            .single()
            .unwrap_or_else(|| panic!("a valid time")),
    );
    assert_eq!(
        a.reserve(&december, &l, demand(1, 1), None).await.unwrap(),
        Reserved::NeedsBaseline,
        "{kind}"
    );
}

/// 200 reservations at once, half through each handle, against a budget that fits
/// 50 and a project limit of 120 requests: exactly 50 get through.
async fn concurrent_reservations_are_atomic(kind: &str) {
    let [a, b] = stores(kind).await;
    let w = window(5);
    let l = limits(rate(Some(120), None), RateLimits::default(), Some(5_000));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.reserve(&w, &l, demand(1, 100), Some(0)).await })
        })
        .collect();
    let mut admitted = 0;
    let mut by_budget = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Reserved::Admitted(_)) => admitted += 1,
            Ok(Reserved::Refused(Limit::Budget, _)) => by_budget += 1,
            other => panic!("{kind}: {other:?}"),
        }
    }
    assert_eq!((admitted, by_budget), (50, 150), "{kind}");
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name("memory").await;
            })*
        }
        mod redis_shared {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name("redis").await;
            })*
        }
    };
}

on_both_stores!(
    requests_per_minute_per_project_and_per_key,
    tokens_are_reserved_then_settled,
    budgets_start_from_a_baseline_and_never_overshoot,
    concurrent_reservations_are_atomic,
);
