//! The limit stores decide alike: the same scenarios run against this process's
//! memory and against Redis (the machine's, or STRATA_TEST_REDIS_URL; a missing Redis
//! fails the test with how to start one). Two `RedisStore`s on one Redis stand for two
//! proxy replicas.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use strata_core::domain::{BudgetPeriod, RateLimits};
use strata_proxy::{
    Baseline, Baselines, Demand, Limit, LimitStore, Limits, LocalStore, RedisStore, Reserved,
    SharedBudget, Window,
};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("STRATA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis store with its own key prefix (tests share one Redis), after checking that
/// Redis answers.
async fn redis_store(prefix: &str, slice: u32) -> RedisStore {
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
    RedisStore::new(&url, prefix, slice).unwrap()
}

/// Two handles on one store: the same `LocalStore` twice, or two Redis clients.
async fn stores(kind: &str) -> [Arc<dyn LimitStore>; 2] {
    match kind {
        "memory" => {
            let local: Arc<dyn LimitStore> = Arc::new(LocalStore::new());
            [local.clone(), local]
        }
        _ => replicas().await.1,
    }
}

/// Two Redis stores on one key prefix (two proxy replicas), and the prefix.
async fn replicas() -> (String, [Arc<dyn LimitStore>; 2]) {
    replicas_taking(strata_proxy::DEFAULT_SLICE_REQUESTS).await
}

/// The same, each taking slices of `slice` requests.
async fn replicas_taking(slice: u32) -> (String, [Arc<dyn LimitStore>; 2]) {
    let prefix = format!("strata-test-{}", Uuid::now_v7());
    let stores: [Arc<dyn LimitStore>; 2] = [
        Arc::new(redis_store(&prefix, slice).await),
        Arc::new(redis_store(&prefix, slice).await),
    ];
    (prefix, stores)
}

/// Redis's own figure for the project's `requests` or `tokens` this minute, or its
/// `budget` this month.
async fn in_redis(prefix: &str, l: &Limits, w: &Window, counter: &str) -> i64 {
    let key = match counter {
        "budget" => format!(
            "{prefix}:{{{}}}:budget:{}",
            l.project,
            w.month.format("%Y-%m")
        ),
        kind => format!("{prefix}:{{{}}}:project:{kind}:{}", l.project, w.minute),
    };
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<i64>>(&mut c)
        .await
        .unwrap()
        .unwrap_or(0)
}

fn limits(project_rate: RateLimits, key_rate: RateLimits, budget: Option<i64>) -> Limits {
    Limits {
        project: Uuid::now_v7(),
        key: Uuid::now_v7(),
        project_rate,
        key_rate,
        budget_micros: budget,
        shared: Arc::from(Vec::new()),
    }
}

fn baseline(project: i64) -> Baselines {
    Baselines {
        project: Some(project),
        shared: Vec::new(),
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
    store.reserve(w, l, d, &baseline(0)).await.unwrap()
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
        ..key_limited.clone()
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
    let first = a
        .reserve(&w, &l, demand(1, 100), &Baselines::default())
        .await
        .unwrap();
    assert_eq!(first, Reserved::NeedsBaseline(Baseline::Project), "{kind}");
    let started = a
        .reserve(&w, &l, demand(1, 1_000), &baseline(8_000))
        .await
        .unwrap();
    match started {
        Reserved::Admitted(c) => assert_eq!(c.spent_micros, 9_000, "{kind}"),
        r => panic!("{kind}: {r:?}"),
    }
    // The other replica sees the counter, and a later baseline does not reset it.
    let over = b
        .reserve(&w, &l, demand(1, 1_001), &baseline(0))
        .await
        .unwrap();
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
        a.reserve(&december, &l, demand(1, 1), &Baselines::default())
            .await
            .unwrap(),
        Reserved::NeedsBaseline(Baseline::Project),
        "{kind}"
    );
}

fn shared(period: BudgetPeriod, amount_micros: i64) -> SharedBudget {
    SharedBudget {
        id: Uuid::now_v7(),
        period,
        amount_micros,
        label: "the team 'ml' budget 'ml-weekly'".into(),
    }
}

fn with_shared(l: Limits, budgets: &[SharedBudget]) -> Limits {
    Limits {
        shared: budgets.to_vec().into(),
        ..l
    }
}

/// A team's budget covers two projects on two replicas: it starts from its own
/// baseline, holds across both, gives a reservation back when the project's own
/// limits refuse the request, and a second (daily) budget refuses on its own.
async fn shared_budgets_hold_across_projects(kind: &str) {
    let [a, b] = stores(kind).await;
    let w = window(6);
    let team = shared(BudgetPeriod::Week, 1_000);
    let none = RateLimits::default();
    let one = with_shared(limits(none, none, None), std::slice::from_ref(&team));
    let two = with_shared(limits(none, none, None), std::slice::from_ref(&team));
    let asked = a
        .reserve(&w, &one, demand(1, 300), &Baselines::default())
        .await
        .unwrap();
    assert_eq!(
        asked,
        Reserved::NeedsBaseline(Baseline::Shared(0)),
        "{kind}"
    );
    let started = Baselines {
        project: None,
        shared: vec![Some(600)],
    };
    assert!(matches!(
        a.reserve(&w, &one, demand(1, 300), &started).await.unwrap(),
        Reserved::Admitted(_)
    ));
    // The other project, through the other replica, meets the same counter.
    match reserve(&b, &w, &two, demand(1, 200)).await {
        Reserved::Refused(Limit::SharedBudget(0), c) => {
            assert_eq!(c.shared_spent_micros, 900, "{kind}")
        }
        r => panic!("{kind}: {r:?}"),
    }
    assert!(matches!(
        reserve(&b, &w, &two, demand(1, 100)).await,
        Reserved::Admitted(_)
    ));
    assert_eq!(
        refused_by(&reserve(&a, &w, &one, demand(1, 1)).await),
        Some(Limit::SharedBudget(0)),
        "{kind}: used up"
    );
    // Settling frees spend for every project under the budget.
    a.settle(&w, &one, 0, -500).await.unwrap();
    // A project whose own rate refuses: the budget's reservation is given back.
    let limited = with_shared(
        limits(rate(Some(1), None), none, None),
        std::slice::from_ref(&team),
    );
    assert!(matches!(
        reserve(&a, &w, &limited, demand(1, 100)).await,
        Reserved::Admitted(_)
    ));
    assert_eq!(
        refused_by(&reserve(&b, &w, &limited, demand(1, 100)).await),
        Some(Limit::ProjectRequests),
        "{kind}"
    );
    // A daily budget beside the weekly one refuses alone, counting in neither.
    let daily = shared(BudgetPeriod::Day, 50);
    let both = with_shared(limits(none, none, None), &[team.clone(), daily]);
    let fresh = Baselines {
        project: None,
        shared: vec![None, Some(0)],
    };
    assert_eq!(
        refused_by(&b.reserve(&w, &both, demand(1, 60), &fresh).await.unwrap()),
        Some(Limit::SharedBudget(1)),
        "{kind}"
    );
    // 600 of 1,000 spent: neither refused request was counted.
    match reserve(&b, &w, &two, demand(1, 400)).await {
        Reserved::Admitted(_) => {}
        r => panic!("{kind}: a refused request's reservation was kept: {r:?}"),
    }
    assert_eq!(
        refused_by(&reserve(&a, &w, &one, demand(1, 1)).await),
        Some(Limit::SharedBudget(0)),
        "{kind}: the weekly budget is still exactly used up"
    );
    // The next week is a new period.
    let next_week = Window::at(
        Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 1)
            .single()
            .unwrap_or_else(|| panic!("a valid time")),
    );
    assert_eq!(
        a.reserve(&next_week, &one, demand(1, 1), &Baselines::default())
            .await
            .unwrap(),
        Reserved::NeedsBaseline(Baseline::Shared(0)),
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
            let l = l.clone();
            tokio::spawn(async move { store.reserve(&w, &l, demand(1, 100), &baseline(0)).await })
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

/// The same with a team budget over two projects, each with its own monthly budget
/// that would fit all its requests: the team's fits 50, and exactly 50 get through.
async fn concurrent_shared_reservations_are_atomic(kind: &str) {
    let [a, b] = stores(kind).await;
    let w = window(7);
    let team = shared(BudgetPeriod::Month, 5_000);
    let none = RateLimits::default();
    let projects = [
        with_shared(
            limits(none, none, Some(100_000)),
            std::slice::from_ref(&team),
        ),
        with_shared(
            limits(none, none, Some(100_000)),
            std::slice::from_ref(&team),
        ),
    ];
    let started = Baselines {
        project: Some(0),
        shared: vec![Some(0)],
    };
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let l = projects[i % 2].clone();
            let started = started.clone();
            tokio::spawn(async move { store.reserve(&w, &l, demand(1, 100), &started).await })
        })
        .collect();
    let mut admitted = 0;
    let mut by_team = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Reserved::Admitted(_)) => admitted += 1,
            Ok(Reserved::Refused(Limit::SharedBudget(0), _)) => by_team += 1,
            other => panic!("{kind}: {other:?}"),
        }
    }
    assert_eq!((admitted, by_team), (50, 150), "{kind}");
}

/// Settlements sent soon (summed with others, a few milliseconds later in Redis)
/// reach the counters as a waited-for one does.
async fn settlements_sent_soon_reach_the_counters(kind: &str) {
    let [a, b] = stores(kind).await;
    let w = window(8);
    let l = limits(rate(None, Some(1_000)), RateLimits::default(), Some(10_000));
    match reserve(&a, &w, &l, demand(900, 9_000)).await {
        Reserved::Admitted(c) => assert_eq!((c.rates[1], c.spent_micros), (900, 9_000)),
        r => panic!("{kind}: {r:?}"),
    }
    // Two requests' worth of settlement from two replicas: 300 + 200 tokens, 4,000 +
    // 1,000 micro-dollars given back.
    a.settle_soon(&w, &l, -300, -4_000);
    b.settle_soon(&w, &l, -200, -1_000);
    let started = std::time::Instant::now();
    loop {
        match reserve(&b, &w, &l, demand(500, 5_000)).await {
            Reserved::Admitted(c) => {
                assert_eq!((c.rates[1], c.spent_micros), (900, 9_000), "{kind}");
                break;
            }
            Reserved::Refused(..) => {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(2),
                    "{kind}: the settlements never arrived"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            r => panic!("{kind}: {r:?}"),
        }
    }
}

/// A replica takes a slice of each counter with its first request, admits the next
/// ones from it without Redis, credits their settlements to it, and gives what it did
/// not use back when it stops, or when the slice has been idle a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_admits_from_its_slice_and_gives_the_rest_back() {
    let (prefix, [a, _]) = replicas().await;
    let w = window(9);
    let l = limits(
        rate(Some(10_000), Some(1_000_000)),
        RateLimits::default(),
        Some(10_000_000),
    );
    let d = demand(100, 1_000);
    for n in 1..=11 {
        match reserve(&a, &w, &l, d).await {
            Reserved::Admitted(c) => {
                assert_eq!(
                    (c.rates[0], c.rates[1], c.spent_micros),
                    (n, n * 100, n * 1_000)
                )
            }
            r => panic!("{r:?}"),
        }
    }
    // The first request and a slice of 64 more were counted; the other ten came from
    // the slice.
    let counted = |counter| in_redis(&prefix, &l, &w, counter);
    assert_eq!(counted("requests").await, 65);
    assert_eq!(counted("tokens").await, 65 * 100);
    assert_eq!(counted("budget").await, 65 * 1_000);
    // A request used 40 of its 100 tokens: credited to the slice, not sent.
    a.settle_soon(&w, &l, -60, -600);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(counted("tokens").await, 65 * 100);
    a.flush().await;
    assert_eq!(counted("requests").await, 11);
    assert_eq!(counted("tokens").await, 11 * 100 - 60);
    assert_eq!(counted("budget").await, 11 * 1_000 - 600);
    // A new slice, given back once idle.
    assert!(matches!(
        reserve(&a, &w, &l, d).await,
        Reserved::Admitted(_)
    ));
    assert_eq!(counted("requests").await, 12 + 64);
    tokio::time::sleep(std::time::Duration::from_millis(1_800)).await;
    assert_eq!(counted("requests").await, 12);
}

/// Without slices every request is counted alone, in Redis, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_slices_redis_counts_each_request_alone() {
    let (prefix, [a, _]) = replicas_taking(0).await;
    let w = window(11);
    let l = limits(rate(Some(10_000), None), RateLimits::default(), None);
    for n in 1..=3 {
        assert!(matches!(
            reserve(&a, &w, &l, demand(1, 0)).await,
            Reserved::Admitted(_)
        ));
        assert_eq!(in_redis(&prefix, &l, &w, "requests").await, n);
    }
}

/// 3,000 reservations at once over two replicas, against a minute's limit of 1,000
/// requests and a budget that fits 800: the replicas' slices together never let
/// more through, and what they did not use goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_never_let_replicas_pass_a_limit_together() {
    let (prefix, [a, b]) = replicas().await;
    let w = window(10);
    for (rpm, budget, fits) in [(1_000, 1_000_000, 1_000), (10_000, 80_000, 800)] {
        let l = limits(rate(Some(rpm), None), RateLimits::default(), Some(budget));
        let tasks: Vec<_> = (0..3_000)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let l = l.clone();
                tokio::spawn(
                    async move { store.reserve(&w, &l, demand(1, 100), &baseline(0)).await },
                )
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(Reserved::Admitted(_)) => admitted += 1,
                Ok(Reserved::Refused(..)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(admitted <= fits, "{admitted} admitted, {fits} fit");
        assert!(
            admitted >= fits * 95 / 100,
            "only {admitted} of {fits} admitted"
        );
        a.flush().await;
        b.flush().await;
        assert_eq!(in_redis(&prefix, &l, &w, "requests").await, admitted);
        assert_eq!(in_redis(&prefix, &l, &w, "budget").await, admitted * 100);
    }
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
    shared_budgets_hold_across_projects,
    concurrent_shared_reservations_are_atomic,
    settlements_sent_soon_reach_the_counters,
);
