//! Rate limits (requests and tokens per minute, per key and per project) and monthly
//! budgets, enforced before a request is forwarded: the request's worst case is
//! reserved atomically in a shared store, then settled to what it really used when it
//! ends. The store is Redis when configured (every replica shares it), else this
//! process's memory (one proxy).
//!
//! Windows are fixed UTC minutes. A budget counter holds the period's metered spend
//! plus the reservations in flight; it starts from the control plane's metered spend
//! the first time the store sees the period. Beside the project's own monthly budget,
//! a request counts against every hard budget that covers its project or its key
//! (a team's, an environment's, a cost tag's, a key's; per day, week or month).

mod baseline;
mod lease;
mod local;
mod redis;

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use strata_contract::{
    BudgetPeriod, BudgetScope, RateLimits, ServiceTier, SnapshotBudget, SnapshotModel,
    SnapshotProject,
};
use uuid::Uuid;

pub use baseline::SpendBaselines;
pub use lease::DEFAULT_SLICE_REQUESTS;
pub use local::LocalStore;
pub use redis::RedisStore;

use crate::error::OpenAiError;
use crate::normalize::Usage;

/// What the limits of one request are, from the key and the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub project: Uuid,
    pub key: Uuid,
    pub project_rate: RateLimits,
    pub key_rate: RateLimits,
    /// The project's monthly budget in micro-dollars.
    pub budget_micros: Option<i64>,
    /// The other hard budgets the request counts against.
    pub shared: Arc<[SharedBudget]>,
}

/// A hard budget beyond the project's own (see [`SnapshotBudget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBudget {
    pub id: Uuid,
    pub period: BudgetPeriod,
    pub amount_micros: i64,
    /// How a refusal names it, e.g. `the team 'ml' budget 'ml-weekly'`.
    pub label: Arc<str>,
}

impl From<&SnapshotBudget> for SharedBudget {
    fn from(b: &SnapshotBudget) -> Self {
        let whose = match b.scope {
            BudgetScope::Project => "the project".to_owned(),
            BudgetScope::Key => "the key".to_owned(),
            BudgetScope::Team => format!("the team '{}'", b.target),
            BudgetScope::Environment => format!("the {} environment", b.target),
            BudgetScope::Tag => format!("the tag {}", b.target),
        };
        Self {
            id: b.id,
            period: b.period,
            amount_micros: b.amount_micros,
            label: format!("{whose} budget '{}'", b.name).into(),
        }
    }
}

impl Limits {
    /// `shared`: the hard budgets covering the project or the key
    /// ([`crate::snapshot::Policy::budgets_for`]).
    pub fn of(
        project: &SnapshotProject,
        key: Uuid,
        key_rate: Option<RateLimits>,
        shared: Arc<[SharedBudget]>,
    ) -> Self {
        Self {
            project: project.id,
            key,
            project_rate: project.rate_limits,
            key_rate: key_rate.unwrap_or_default(),
            // Budgets are whole cents, so this is exact.
            budget_micros: project
                .monthly_budget_usd
                .map(|usd| (usd * 1e6).round() as i64),
            shared,
        }
    }

    /// Nothing to enforce: no store round trip at all.
    pub fn is_empty(&self) -> bool {
        self.project_rate == RateLimits::default()
            && self.key_rate == RateLimits::default()
            && self.budget_micros.is_none()
            && self.shared.is_empty()
    }

    /// `[project rpm, project tpm, key rpm, key tpm]`; `None`: no limit.
    fn rates(&self) -> [Option<u64>; 4] {
        [
            self.project_rate.rpm,
            self.project_rate.tpm,
            self.key_rate.rpm,
            self.key_rate.tpm,
        ]
    }
}

/// A request's (or its settlement's) tokens and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub tokens: u64,
    pub cost_micros: i64,
}

impl Demand {
    /// A request's worst case before it is sent: an input estimate (none of it read
    /// from a cache, all of it written to one if that costs more) plus its
    /// `max_tokens`, at `prices`.
    pub fn priced(prices: Prices, input_tokens: u64, output_tokens: u64) -> Self {
        let worst_input = prices.input.max(prices.cache_write);
        let cost =
            price(input_tokens, worst_input).saturating_add(price(output_tokens, prices.output));
        Self {
            tokens: input_tokens.saturating_add(output_tokens),
            cost_micros: scaled(cost, prices.worst_factor()),
        }
    }

    /// What a request used: its input tokens include those read from the prompt cache
    /// and those written to it, each priced at their own price.
    pub fn used(prices: Prices, usage: &Usage) -> Self {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
        let cost = price(usage.input_tokens - cached - written, prices.input)
            .saturating_add(price(cached, prices.cached_input))
            .saturating_add(price(written, prices.cache_write))
            .saturating_add(price(usage.output_tokens, prices.output));
        Self {
            tokens: usage.input_tokens.saturating_add(usage.output_tokens),
            cost_micros: scaled(cost, prices.factor(usage.service_tier)),
        }
    }
}

/// A model's prices in micro-dollars per million tokens, and what each service tier
/// costs as a factor of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub input: i64,
    pub cached_input: i64,
    pub cache_write: i64,
    pub output: i64,
    /// By tier, in the order of [`TIERS`].
    pub tier_factors: [f64; 4],
}

const TIERS: [ServiceTier; 4] = [
    ServiceTier::Default,
    ServiceTier::Priority,
    ServiceTier::Flex,
    ServiceTier::Reserved,
];

impl Default for Prices {
    fn default() -> Self {
        Self {
            input: 0,
            cached_input: 0,
            cache_write: 0,
            output: 0,
            tier_factors: [1.0; 4],
        }
    }
}

impl Prices {
    fn factor(&self, tier: ServiceTier) -> f64 {
        TIERS
            .iter()
            .position(|t| *t == tier)
            .map_or(1.0, |i| self.tier_factors[i])
    }

    /// The dearest tier's factor, at least 1 (a request's tier is known from the answer
    /// only).
    fn worst_factor(&self) -> f64 {
        self.tier_factors.iter().copied().fold(1.0, f64::max)
    }
}

/// A model's prices from the catalog (cached input and cache writes at the input
/// price when the control plane's snapshot does not say).
pub fn prices(model: &SnapshotModel) -> Prices {
    let input = model.input_price_micros_per_mtok;
    Prices {
        input,
        cached_input: model.cached_input_price_micros_per_mtok.unwrap_or(input),
        cache_write: model.cache_write_price_micros_per_mtok.unwrap_or(input),
        output: model.output_price_micros_per_mtok,
        tier_factors: TIERS.map(|tier| {
            model
                .service_tier_price_factors
                .get(&tier)
                .copied()
                .unwrap_or(1.0)
        }),
    }
}

/// `micros` at `factor`, rounded up like [`price`].
fn scaled(micros: i64, factor: f64) -> i64 {
    (micros as f64 * factor).ceil() as i64
}

/// Micro-dollars for `tokens` at `per_mtok` micro-dollars per million, rounded up (a
/// reservation must not come out below the metered cost, which rounds down).
fn price(tokens: u64, per_mtok: i64) -> i64 {
    let micros = (i128::from(tokens) * i128::from(per_mtok.max(0)) + 999_999) / 1_000_000;
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// A rough upper estimate of a request's input tokens from its body size (about four
/// bytes of JSON per token); settled to the real count when the answer comes.
pub fn estimate_input_tokens(body_bytes: usize) -> u64 {
    (body_bytes as u64).div_ceil(4)
}

/// Which limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    ProjectRequests,
    ProjectTokens,
    KeyRequests,
    KeyTokens,
    Budget,
    /// `Limits::shared[i]`.
    SharedBudget(usize),
}

impl Limit {
    /// In the order of [`Limits::rates`].
    const RATES: [Limit; 4] = [
        Limit::ProjectRequests,
        Limit::ProjectTokens,
        Limit::KeyRequests,
        Limit::KeyTokens,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::ProjectRequests => "project_requests",
            Limit::ProjectTokens => "project_tokens",
            Limit::KeyRequests => "key_requests",
            Limit::KeyTokens => "key_tokens",
            Limit::Budget => "budget",
            Limit::SharedBudget(_) => "shared_budget",
        }
    }
}

/// The counters a store read, in the order of [`Limits::rates`], the project
/// budget's, and (on a refusal by a shared budget) that budget's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rates: [i64; 4],
    pub spent_micros: i64,
    pub shared_spent_micros: i64,
}

/// A store's answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Counted; the counters after it.
    Admitted(Counters),
    /// Nothing counted; the counters as they are.
    Refused(Limit, Counters),
    /// The store has no counter for this budget's period yet: ask again with the
    /// control plane's figure for it.
    NeedsBaseline(Baseline),
}

/// A budget counter a store needs a starting figure for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The project's month.
    Project,
    /// `Limits::shared[i]`'s period.
    Shared(usize),
}

/// The control plane's figures for counters the store has not started yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baselines {
    pub project: Option<i64>,
    /// By index into `Limits::shared`.
    pub shared: Vec<Option<i64>>,
}

impl Baselines {
    pub fn shared(&self, i: usize) -> Option<i64> {
        self.shared.get(i).copied().flatten()
    }
}

/// The minute and month a request is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The request's time, Unix seconds.
    pub secs: i64,
    /// Minutes since the Unix epoch.
    pub minute: i64,
    /// Seconds left in that minute (1 to 60).
    pub reset_secs: u64,
    /// The month's first day.
    pub month: NaiveDate,
    /// Seconds until the month ends.
    pub month_left_secs: u64,
}

impl Window {
    pub fn at(now: DateTime<Utc>) -> Self {
        let secs = now.timestamp();
        let month = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or(now.date_naive());
        let next = strata_contract::next_month_start(month);
        let month_end = next
            .and_hms_opt(0, 0, 0)
            .map_or(secs, |t| t.and_utc().timestamp());
        Self {
            secs,
            minute: secs.div_euclid(60),
            reset_secs: (60 - secs.rem_euclid(60)) as u64,
            month,
            month_left_secs: month_end.saturating_sub(secs).max(1) as u64,
        }
    }

    /// The first day of the `period` holding this window, and the seconds until it
    /// ends.
    pub fn period(&self, period: BudgetPeriod) -> (NaiveDate, u64) {
        let day = DateTime::from_timestamp(self.secs, 0)
            .unwrap_or_default()
            .date_naive();
        let (start, end) = period.bounds(day);
        let end_secs = end
            .and_hms_opt(0, 0, 0)
            .map_or(self.secs, |t| t.and_utc().timestamp());
        (start, end_secs.saturating_sub(self.secs).max(1) as u64)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where the counters live. Both implementations decide exactly alike: refuse when
/// any counter plus this request would pass its limit, else count the request in all.
#[async_trait::async_trait]
pub trait LimitStore: Send + Sync {
    async fn reserve(
        &self,
        window: &Window,
        limits: &Limits,
        demand: Demand,
        baselines: &Baselines,
    ) -> Result<Reserved, StoreError>;

    /// Adds `tokens` and `cost_micros` (used − reserved; usually negative) to the
    /// window's token counters and the budget counters, where they still exist.
    async fn settle(
        &self,
        window: &Window,
        limits: &Limits,
        tokens: i64,
        cost_micros: i64,
    ) -> Result<(), StoreError>;

    /// [`LimitStore::settle`] without waiting: a shared store may send it a few
    /// milliseconds later with others (counters over-count meanwhile, the safe way).
    fn settle_soon(&self, window: &Window, limits: &Limits, tokens: i64, cost_micros: i64);

    /// Sends whatever this process still holds for the shared store (settlements
    /// not sent yet, unused slices of its counters): when the proxy stops.
    async fn flush(&self) {}

    /// `redis` or `memory`, for logs and the benchmark.
    fn kind(&self) -> &'static str;
}

/// The decision both stores make on the rates and the project's budget, on counters
/// read atomically (shared budgets: [`over_shared`]).
pub(crate) fn decide(limits: &Limits, demand: Demand, counters: &Counters) -> Result<(), Limit> {
    let adds = [1, demand.tokens as i64, 1, demand.tokens as i64];
    for (i, rate) in limits.rates().into_iter().enumerate() {
        if let Some(limit) = rate
            && counters.rates[i].saturating_add(adds[i]) > limit as i64
        {
            return Err(Limit::RATES[i]);
        }
    }
    if let Some(budget) = limits.budget_micros
        && counters.spent_micros.saturating_add(demand.cost_micros) > budget
    {
        return Err(Limit::Budget);
    }
    Ok(())
}

/// The first shared budget that `demand` would take past its amount, given each one's
/// spend (in the order of `Limits::shared`).
pub(crate) fn over_shared(
    limits: &Limits,
    demand: Demand,
    spent: impl IntoIterator<Item = i64>,
) -> Option<(usize, i64)> {
    limits
        .shared
        .iter()
        .zip(spent)
        .enumerate()
        .find(|(_, (b, spent))| spent.saturating_add(demand.cost_micros) > b.amount_micros)
        .map(|(i, (_, spent))| (i, spent))
}

/// What to do when the shared store does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnStoreError {
    /// Forward the request unlimited (and count the failure in metrics).
    Allow,
    /// Refuse it with 503.
    Deny,
}

/// A request counted against its limits; settle it when the request ends.
#[derive(Debug, Clone)]
pub struct Reservation {
    window: Window,
    limits: Limits,
    demand: Demand,
}

/// The outcome of [`Limiter::admit`].
pub struct Admission {
    /// `None` when there was nothing to reserve (no limits), or the store failed and
    /// the policy is to allow.
    pub reservation: Option<Reservation>,
    /// `x-ratelimit-*` for the answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub struct Limiter {
    store: Arc<dyn LimitStore>,
    baselines: SpendBaselines,
    on_error: OnStoreError,
    pub errors: prometheus_client::metrics::counter::Counter,
}

impl Limiter {
    pub fn new(
        store: Arc<dyn LimitStore>,
        baselines: SpendBaselines,
        on_error: OnStoreError,
    ) -> Self {
        Self {
            store,
            baselines,
            on_error,
            errors: Default::default(),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Reserves `demand` under `limits`, or says which limit refuses it (429).
    pub async fn admit(
        &self,
        limits: &Limits,
        demand: Demand,
        now: DateTime<Utc>,
    ) -> Result<Admission, OpenAiError> {
        if limits.is_empty() {
            return Ok(Admission {
                reservation: None,
                headers: Vec::new(),
            });
        }
        let window = Window::at(now);
        let mut baselines = Baselines::default();
        let mut answer = self
            .store
            .reserve(&window, limits, demand, &baselines)
            .await;
        // Each missing counter once at most: the project's month, then each budget's.
        for _ in 0..=limits.shared.len() {
            let Ok(Reserved::NeedsBaseline(missing)) = answer else {
                break;
            };
            let fetched = match missing {
                Baseline::Project => self.baselines.project(limits.project, window.month).await,
                Baseline::Shared(i) => match limits.shared.get(i) {
                    Some(b) => self.baselines.budget(b.id, window.period(b.period).0).await,
                    None => break,
                },
            };
            let figure = match fetched {
                Ok(figure) => figure,
                Err(e) => {
                    tracing::warn!(project.id = %limits.project, error.cause = %e, "cannot read a budget's spend this period from the control plane");
                    return Err(OpenAiError::unavailable(
                        "budget_unavailable",
                        "The proxy cannot read this project's budget spend yet; retry shortly.",
                    ));
                }
            };
            match missing {
                Baseline::Project => baselines.project = Some(figure),
                Baseline::Shared(i) => {
                    if baselines.shared.len() <= i {
                        baselines.shared.resize(i + 1, None);
                    }
                    baselines.shared[i] = Some(figure);
                }
            }
            answer = self
                .store
                .reserve(&window, limits, demand, &baselines)
                .await;
        }
        match answer {
            Ok(Reserved::Admitted(counters)) => Ok(Admission {
                reservation: Some(Reservation {
                    window,
                    limits: limits.clone(),
                    demand,
                }),
                headers: rate_headers(limits, &counters, &window),
            }),
            Ok(Reserved::Refused(limit, counters)) => {
                Err(refusal(limit, limits, demand, &counters, &window))
            }
            Ok(Reserved::NeedsBaseline(_)) => Err(OpenAiError::unavailable(
                "budget_unavailable",
                "The proxy cannot start this project's budget counter; retry shortly.",
            )),
            Err(e) => {
                self.errors.inc();
                tracing::warn!(limits.store = self.store.kind(), error.cause = %e, "the rate-limit store failed");
                match self.on_error {
                    OnStoreError::Allow => Ok(Admission {
                        reservation: None,
                        headers: Vec::new(),
                    }),
                    OnStoreError::Deny => Err(OpenAiError::unavailable(
                        "limits_unavailable",
                        "The proxy cannot check this project's limits now; retry shortly.",
                    )),
                }
            }
        }
    }

    /// Settles `reservation` to what the request used (in the background: the
    /// answer has gone already).
    pub fn settle(self: &Arc<Self>, reservation: Reservation, used: Demand) {
        let tokens = (used.tokens as i64).saturating_sub(reservation.demand.tokens as i64);
        let cost = used
            .cost_micros
            .saturating_sub(reservation.demand.cost_micros);
        if tokens == 0 && cost == 0 {
            return;
        }
        let r = &reservation;
        self.store.settle_soon(&r.window, &r.limits, tokens, cost);
    }
}

impl Limiter {
    /// Counts `used` against `limits` without a reservation (a background response
    /// another replica created and reserved for): in the background.
    pub fn charge(self: &Arc<Self>, limits: &Limits, used: Demand) {
        if limits.is_empty() || used == Demand::default() {
            return;
        }
        let window = Window::at(Utc::now());
        let tokens = i64::try_from(used.tokens).unwrap_or(i64::MAX);
        self.store
            .settle_soon(&window, limits, tokens, used.cost_micros);
    }

    /// Sends what the store holds for others (see [`LimitStore::flush`]).
    pub async fn flush(&self) {
        self.store.flush().await;
    }

    /// Gives a reservation back whole (the request did not run here), and waits for it.
    pub async fn release(&self, reservation: Reservation) {
        let r = &reservation;
        let tokens = -i64::try_from(r.demand.tokens).unwrap_or(i64::MAX);
        if let Err(e) = self
            .store
            .settle(&r.window, &r.limits, tokens, -r.demand.cost_micros)
            .await
        {
            self.errors.inc();
            tracing::warn!(limits.store = self.store.kind(), error.cause = %e, "cannot release a reservation");
        }
    }
}

/// A header value from a string the proxy made itself (digits and units).
fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The tightest of the project's and the key's limits of one kind (requests or
/// tokens): `(limit, remaining)`.
fn tightest(limits: &Limits, counters: &Counters, indexes: [usize; 2]) -> Option<(u64, u64)> {
    let rates = limits.rates();
    indexes
        .into_iter()
        .filter_map(|i| {
            let limit = rates[i]?;
            let used = counters.rates[i].max(0) as u64;
            Some((limit, limit.saturating_sub(used)))
        })
        .min_by_key(|(_, remaining)| *remaining)
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
fn rate_headers(
    limits: &Limits,
    counters: &Counters,
    window: &Window,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (kind, indexes) in [("requests", [0, 2]), ("tokens", [1, 3])] {
        if let Some((limit, remaining)) = tightest(limits, counters, indexes) {
            for (name, v) in [
                ("limit", limit.to_string()),
                ("remaining", remaining.to_string()),
                ("reset", format!("{}s", window.reset_secs)),
            ] {
                if let Ok(name) = HeaderName::try_from(format!("x-ratelimit-{name}-{kind}")) {
                    out.push((name, value(v)));
                }
            }
        }
    }
    out
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// The 429 for `limit`, in OpenAI's words and headers.
fn refusal(
    limit: Limit,
    limits: &Limits,
    demand: Demand,
    counters: &Counters,
    window: &Window,
) -> OpenAiError {
    let mut headers = rate_headers(limits, counters, window);
    let (scope, per) = match limit {
        Limit::ProjectRequests => ("this project", "requests per minute"),
        Limit::ProjectTokens => ("this project", "tokens per minute"),
        Limit::KeyRequests => ("this key", "requests per minute"),
        Limit::KeyTokens => ("this key", "tokens per minute"),
        Limit::SharedBudget(i) => {
            let Some(budget) = limits.shared.get(i) else {
                return OpenAiError::unavailable(
                    "budget_unavailable",
                    "The proxy's budgets changed during this request; retry.",
                );
            };
            let (start, left_secs) = window.period(budget.period);
            let (_, end) = budget.period.bounds(start);
            let spent = counters.shared_spent_micros;
            let message = if demand.cost_micros > budget.amount_micros.saturating_sub(spent)
                && spent < budget.amount_micros
            {
                format!(
                    "This request could cost up to ${:.6}, more than is left of {} (${:.2} of ${:.2} spent or reserved this {}). Lower max_tokens, or ask the platform team to raise the budget.",
                    demand.cost_micros as f64 / 1e6,
                    budget.label,
                    spent as f64 / 1e6,
                    budget.amount_micros as f64 / 1e6,
                    budget.period,
                )
            } else {
                format!(
                    "{} (${:.2} per {}) is used up; it resets on {end} at 00:00 UTC.",
                    capitalized(&budget.label),
                    budget.amount_micros as f64 / 1e6,
                    budget.period,
                )
            };
            headers.push((SHOULD_RETRY, HeaderValue::from_static("false")));
            return OpenAiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
                message,
            )
            .retry_after(left_secs)
            .with_headers(headers);
        }
        Limit::Budget => {
            let budget = limits.budget_micros.unwrap_or(0);
            let message = if demand.cost_micros > budget.saturating_sub(counters.spent_micros)
                && counters.spent_micros < budget
            {
                format!(
                    "This request could cost up to ${:.6}, more than is left of the project's monthly budget (${:.2} of ${:.2} spent or reserved). Lower max_tokens, or ask the platform team to raise the budget.",
                    demand.cost_micros as f64 / 1e6,
                    counters.spent_micros as f64 / 1e6,
                    budget as f64 / 1e6
                )
            } else {
                format!(
                    "This project has used its monthly budget (${:.2}); it resets at the start of next month (UTC).",
                    budget as f64 / 1e6
                )
            };
            headers.push((SHOULD_RETRY, HeaderValue::from_static("false")));
            return OpenAiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
                message,
            )
            .retry_after(window.month_left_secs)
            .with_headers(headers);
        }
    };
    let index = Limit::RATES.iter().position(|l| *l == limit).unwrap_or(0);
    let cap = limits.rates()[index].unwrap_or(0);
    let used = counters.rates[index].max(0);
    let requested = if index % 2 == 0 { 1 } else { demand.tokens };
    let kind = if index % 2 == 0 { "requests" } else { "tokens" };
    let message = if requested > cap {
        // It would not fit in an empty minute either: retrying cannot help.
        headers.push((SHOULD_RETRY, HeaderValue::from_static("false")));
        format!(
            "Request too large for {scope}'s {per}: limit {cap}, requested {requested} (the prompt's estimate plus max_tokens). Lower max_tokens or shorten the prompt."
        )
    } else {
        format!(
            "Rate limit reached for {scope}'s {per}: limit {cap}, used {used}, requested {requested}. Please try again in {}s.",
            window.reset_secs
        )
    };
    OpenAiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        kind,
        "rate_limit_exceeded",
        message,
    )
    .retry_after(window.reset_secs)
    .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, s)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn windows_are_utc_minutes_and_months() {
        let w = Window::at(at(30, 23, 59, 45));
        assert_eq!(w.reset_secs, 15);
        assert_eq!(w.month_left_secs, 15);
        assert_eq!(
            w.month,
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default()
        );
        let next = Window::at(at(30, 23, 59, 0));
        assert_eq!(next.minute, w.minute);
        assert_eq!(next.reset_secs, 60);
    }

    #[test]
    fn reservations_round_up_and_price_input_and_output_apart() {
        // 1,001 input tokens at $0.15 / M = 150.15 micro-dollars, up to 151.
        let p = Prices {
            input: 150_000,
            cached_input: 15_000,
            cache_write: 150_000,
            output: 600_000,
            tier_factors: [1.0; 4],
        };
        let d = Demand::priced(p, 1_001, 10);
        assert_eq!(d.tokens, 1_011);
        assert_eq!(d.cost_micros, 151 + 6);
        assert_eq!(Demand::priced(Prices::default(), 5, 5).cost_micros, 0);
        let usage = |input, cached, written, output| Usage {
            input_tokens: input,
            cached_tokens: cached,
            cache_write_tokens: written,
            output_tokens: output,
            service_tier: ServiceTier::Default,
        };
        // 1,000 of 2,000 input tokens from the cache: 150 + 15 + 6.
        let used = Demand::used(p, &usage(2_000, 1_000, 0, 10));
        assert_eq!((used.tokens, used.cost_micros), (2_010, 150 + 15 + 6));
        // More cached than input (a malformed answer) is taken as all cached.
        assert_eq!(Demand::used(p, &usage(10, 50, 0, 0)).cost_micros, 1);
        // Cache writes at their own price; the worst case takes the dearer one.
        let claude = Prices {
            input: 5_000_000,
            cached_input: 500_000,
            cache_write: 6_250_000,
            output: 25_000_000,
            tier_factors: [1.0; 4],
        };
        let used = Demand::used(claude, &usage(3_000, 1_000, 1_000, 100));
        assert_eq!(used.cost_micros, 5_000 + 500 + 6_250 + 2_500);
        assert_eq!(Demand::priced(claude, 1_000, 0).cost_micros, 6_250);
        // A tier's factor applies to what was used in it; the worst case takes the
        // dearest tier.
        let tiered = Prices {
            tier_factors: [1.0, 1.75, 0.5, 1.0],
            ..claude
        };
        let flex = Usage {
            service_tier: ServiceTier::Flex,
            ..usage(1_000, 0, 0, 0)
        };
        assert_eq!(Demand::used(tiered, &flex).cost_micros, 2_500);
        assert_eq!(Demand::priced(tiered, 1_000, 0).cost_micros, 10_938);
        assert_eq!(estimate_input_tokens(0), 0);
        assert_eq!(estimate_input_tokens(9), 3);
    }

    fn limits(project: RateLimits, key: RateLimits, budget: Option<i64>) -> Limits {
        Limits {
            project: Uuid::from_u128(1),
            key: Uuid::from_u128(2),
            project_rate: project,
            key_rate: key,
            budget_micros: budget,
            shared: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn the_first_limit_passed_refuses() {
        let l = limits(
            RateLimits {
                rpm: Some(10),
                tpm: Some(100),
            },
            RateLimits {
                rpm: Some(5),
                tpm: None,
            },
            Some(1_000),
        );
        let d = Demand {
            tokens: 50,
            cost_micros: 100,
        };
        let counters = |rates, spent| Counters {
            rates,
            spent_micros: spent,
            shared_spent_micros: 0,
        };
        assert_eq!(decide(&l, d, &counters([9, 50, 4, 0], 900)), Ok(()));
        assert_eq!(
            decide(&l, d, &counters([10, 0, 0, 0], 0)),
            Err(Limit::ProjectRequests)
        );
        assert_eq!(
            decide(&l, d, &counters([0, 51, 0, 0], 0)),
            Err(Limit::ProjectTokens)
        );
        assert_eq!(
            decide(&l, d, &counters([0, 0, 5, 0], 0)),
            Err(Limit::KeyRequests)
        );
        assert_eq!(
            decide(&l, d, &counters([0, 0, 0, 0], 901)),
            Err(Limit::Budget)
        );
        assert!(limits(RateLimits::default(), RateLimits::default(), None).is_empty());
    }

    #[test]
    fn refusals_carry_openai_headers_and_say_whether_to_retry() {
        let l = limits(
            RateLimits {
                rpm: Some(10),
                tpm: Some(100),
            },
            RateLimits {
                rpm: Some(3),
                tpm: None,
            },
            Some(1_000),
        );
        let w = Window::at(at(27, 10, 0, 20));
        let c = Counters {
            rates: [3, 40, 3, 0],
            spent_micros: 200,
            shared_spent_micros: 0,
        };
        let d = Demand {
            tokens: 10,
            cost_micros: 5,
        };
        let e = refusal(Limit::KeyRequests, &l, d, &c, &w);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(40));
        assert_eq!(
            (e.kind, e.code.as_deref()),
            ("requests", Some("rate_limit_exceeded"))
        );
        let header = |e: &OpenAiError, name: &str| {
            e.headers
                .iter()
                .flat_map(|h| h.iter())
                .find(|(n, _)| n.as_str() == name)
                .and_then(|(_, v)| v.to_str().ok().map(str::to_owned))
        };
        // The key's limit is the tighter one: it is the one shown.
        assert_eq!(
            header(&e, "x-ratelimit-limit-requests").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(&e, "x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        assert_eq!(
            header(&e, "x-ratelimit-reset-requests").as_deref(),
            Some("40s")
        );
        assert_eq!(
            header(&e, "x-ratelimit-remaining-tokens").as_deref(),
            Some("60")
        );
        assert_eq!(header(&e, "x-should-retry"), None);
        let too_big = Demand {
            tokens: 101,
            cost_micros: 5,
        };
        let e = refusal(Limit::ProjectTokens, &l, too_big, &c, &w);
        assert_eq!(header(&e, "x-should-retry").as_deref(), Some("false"));
        assert!(e.message.contains("Request too large"), "{}", e.message);
        let e = refusal(
            Limit::Budget,
            &l,
            d,
            &Counters {
                spent_micros: 1_000,
                ..c
            },
            &w,
        );
        assert_eq!(
            (e.kind, e.code.as_deref()),
            ("insufficient_quota", Some("insufficient_quota"))
        );
        assert_eq!(header(&e, "x-should-retry").as_deref(), Some("false"));
        assert!(
            e.message.contains("used its monthly budget"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_shared_budget_refusal_names_the_budget_and_when_it_resets() {
        let team = SharedBudget::from(&SnapshotBudget {
            id: Uuid::from_u128(9),
            name: "ml-weekly".into(),
            scope: BudgetScope::Team,
            target: "ml".into(),
            period: BudgetPeriod::Week,
            amount_micros: 250_000_000,
            projects: vec![Uuid::from_u128(1)],
            key: None,
        });
        let l = Limits {
            shared: vec![team].into(),
            ..limits(RateLimits::default(), RateLimits::default(), None)
        };
        // Friday 27 November 2026, 10:00:20: the week ends on Monday the 30th.
        let w = Window::at(at(27, 10, 0, 20));
        let c = |spent| Counters {
            shared_spent_micros: spent,
            ..Counters::default()
        };
        let small = Demand {
            tokens: 10,
            cost_micros: 5,
        };
        let e = refusal(Limit::SharedBudget(0), &l, small, &c(250_000_000), &w);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
        assert_eq!(
            e.message,
            "The team 'ml' budget 'ml-weekly' ($250.00 per week) is used up; it resets on 2026-11-30 at 00:00 UTC."
        );
        assert_eq!(e.retry_after, Some(2 * 86_400 + 13 * 3_600 + 59 * 60 + 40));
        let big = Demand {
            tokens: 10,
            cost_micros: 2_000_000,
        };
        let e = refusal(Limit::SharedBudget(0), &l, big, &c(249_000_000), &w);
        assert!(
            e.message.starts_with("This request could cost up to $2.000000, more than is left of the team 'ml' budget 'ml-weekly' ($249.00 of $250.00 spent or reserved this week)"),
            "{}",
            e.message
        );
    }
}
