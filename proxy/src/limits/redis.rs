//! Counters in Redis, shared by every proxy replica. Each reservation is one Lua
//! script (Redis runs a script alone, so check-and-count is atomic across replicas);
//! every key of a request carries the project in a hash tag, so the script's keys sit
//! in one slot of a Redis Cluster too. Hard budgets shared by several projects live
//! in a slot of their own and are reserved first, by a second script: if the
//! project's script then refuses, their reservation is given back.
//!
//! Settlements are summed per counter and sent every few milliseconds, one script per
//! slot, rather than one per request: under load that takes most of the Redis work
//! off each request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::control::StartError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{
    Baseline, Baselines, Counters, Demand, Limit, LimitStore, Limits, Reserved, StoreError, Window,
};

/// KEYS: project requests, project tokens, key requests, key tokens (this minute),
/// budget (this month). ARGV: the four rate limits (-1: none), tokens, budget (-1:
/// none), cost, baseline (-1: unknown), window TTL, budget TTL.
/// Returns `{status, limit, pr, pt, kr, kt, spent}`: status 1 admitted, 0 refused
/// (`limit` is 1-4 for the rates in that order, 5 for the budget), -1 needs a baseline.
/// Counters are only kept for the limits in force. It counts first and takes a
/// refusal back, all inside the script: an admitted request, the usual case, costs
/// one INCRBY per counter and no reads; a window's TTL is set when it is created.
const RESERVE: &str = r"
local lim = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local tokens = tonumber(ARGV[5])
local add = {1, tokens, 1, tokens}
local cur = {0, 0, 0, 0}
local budget = tonumber(ARGV[6])
local cost = tonumber(ARGV[7])
local spent = 0
if budget >= 0 and redis.call('EXISTS', KEYS[5]) == 0 then
  if tonumber(ARGV[8]) < 0 then return {-1, 0, 0, 0, 0, 0, 0} end
  redis.call('SET', KEYS[5], ARGV[8], 'EX', ARGV[10])
end
for i = 1, 4 do
  if lim[i] >= 0 then
    cur[i] = redis.call('INCRBY', KEYS[i], add[i])
    if cur[i] == add[i] then redis.call('EXPIRE', KEYS[i], ARGV[9]) end
  end
end
if budget >= 0 then spent = redis.call('INCRBY', KEYS[5], cost) end
local refused = 0
for i = 1, 4 do
  if refused == 0 and lim[i] >= 0 and cur[i] > lim[i] then refused = i end
end
if refused == 0 and budget >= 0 and spent > budget then refused = 5 end
if refused == 0 then return {1, 0, cur[1], cur[2], cur[3], cur[4], spent} end
for i = 1, 4 do
  if lim[i] >= 0 then cur[i] = redis.call('DECRBY', KEYS[i], add[i]) end
end
if budget >= 0 then spent = redis.call('DECRBY', KEYS[5], cost) end
return {0, refused, cur[1], cur[2], cur[3], cur[4], spent}
";

/// KEYS: project tokens, key tokens, budget. ARGV: tokens delta, cost delta. Only
/// counters that still exist change (an expired window needs no correction; a lost
/// budget counter restarts from the control plane's figure).
const SETTLE: &str = r"
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBY', KEYS[3], ARGV[2]) end
return 1
";

/// KEYS: the shared budgets' counters (this period each). ARGV: cost, then per key
/// its amount, baseline (-1: unknown) and TTL. Returns `{status, i, spent}`: 1
/// admitted, 0 refused by the `i`th budget (1-based) at `spent`, -1 the `i`th needs a
/// baseline.
const RESERVE_SHARED: &str = r"
local cost = tonumber(ARGV[1])
local spent = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then
    if tonumber(ARGV[3 * i]) < 0 then return {-1, i, 0} end
    redis.call('SET', KEYS[i], ARGV[3 * i], 'EX', ARGV[3 * i + 1])
    v = ARGV[3 * i]
  end
  spent[i] = tonumber(v)
end
for i = 1, #KEYS do
  if spent[i] + cost > tonumber(ARGV[3 * i - 1]) then return {0, i, spent[i]} end
end
for i = 1, #KEYS do redis.call('INCRBY', KEYS[i], cost) end
return {1, 0, 0}
";

/// KEYS: counters in one slot. ARGV: each one's delta. As [`SETTLE`].
const SETTLE_SUMS: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[i]) end
end
return 1
";

/// How long settlements gather before they are sent.
const SETTLE_GATHER: Duration = Duration::from_millis(2);

/// Settlements not sent yet: by slot (hash tag), each counter's summed delta.
#[derive(Default)]
struct Unsent {
    by_slot: Mutex<HashMap<String, HashMap<String, i64>>>,
    wake: tokio::sync::Notify,
}

impl Unsent {
    fn add(&self, slot: &str, key: String, delta: i64) {
        if delta == 0 {
            return;
        }
        let mut by_slot = self
            .by_slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sums = by_slot.entry(slot.to_owned()).or_default();
        let sum = sums.entry(key).or_default();
        *sum = sum.saturating_add(delta);
    }

    fn take(&self) -> HashMap<String, HashMap<String, i64>> {
        std::mem::take(
            &mut *self
                .by_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Sends what gathered, every [`SETTLE_GATHER`] while there is any.
async fn send_settlements(unsent: Arc<Unsent>, connection: ConnectionManager) {
    let script = redis::Script::new(SETTLE_SUMS);
    loop {
        unsent.wake.notified().await;
        tokio::time::sleep(SETTLE_GATHER).await;
        let sends = unsent.take().into_values().map(|sums| {
            let mut invocation = script.prepare_invoke();
            for (key, delta) in &sums {
                invocation.key(key).arg(*delta);
            }
            let mut connection = connection.clone();
            async move {
                invocation
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map_err(error)
            }
        });
        for result in futures_util::future::join_all(sends).await {
            if let Err(e) = result {
                // The counters keep the reservations: they over-count until the window
                // or period ends, refusing early rather than late.
                tracing::warn!(limits.store = "redis", error.cause = %e, "cannot send settlements");
            }
        }
    }
}

/// KEYS: shared budgets' counters. ARGV: cost delta. As [`SETTLE`].
const SETTLE_SHARED: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
end
return 1
";

/// Windows are kept a little past their minute, for settlements that arrive late.
const WINDOW_TTL_SECS: u64 = 180;
/// A month's budget counter outlives the month by a week (late settlements).
const BUDGET_GRACE_SECS: u64 = 7 * 86_400;

pub struct RedisStore {
    connection: ConnectionManager,
    reserve: redis::Script,
    settle: redis::Script,
    reserve_shared: redis::Script,
    settle_shared: redis::Script,
    prefix: String,
    unsent: Arc<Unsent>,
    /// The task that sends them, started with the first.
    sender: OnceLock<()>,
}

impl RedisStore {
    /// Connects lazily (the first request connects; a broken connection reconnects).
    /// `prefix` keeps several strata installations apart on one Redis.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StartError> {
        let client = redis::Client::open(url).map_err(StartError::RedisUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(StartError::Redis)?;
        Ok(Self {
            connection,
            reserve: redis::Script::new(RESERVE),
            settle: redis::Script::new(SETTLE),
            reserve_shared: redis::Script::new(RESERVE_SHARED),
            settle_shared: redis::Script::new(SETTLE_SHARED),
            prefix: prefix.to_owned(),
            unsent: Arc::default(),
            sender: OnceLock::new(),
        })
    }

    /// The multiplexed connection, for other shared state (response owners).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    fn rate_key(&self, limits: &Limits, scope: &str, kind: &str, minute: i64) -> String {
        format!(
            "{}:{{{}}}:{scope}:{kind}:{minute}",
            self.prefix, limits.project
        )
    }

    fn keys(&self, window: &Window, limits: &Limits) -> [String; 5] {
        let key_scope = format!("key:{}", limits.key);
        [
            self.rate_key(limits, "project", "requests", window.minute),
            self.rate_key(limits, "project", "tokens", window.minute),
            self.rate_key(limits, &key_scope, "requests", window.minute),
            self.rate_key(limits, &key_scope, "tokens", window.minute),
            self.budget_key(window, limits),
        ]
    }

    /// The counters a settlement moves: the project's and the key's tokens, and the
    /// project's budget (the request counters are final at the reservation).
    fn settled_keys(&self, window: &Window, limits: &Limits) -> [String; 3] {
        [
            self.rate_key(limits, "project", "tokens", window.minute),
            self.rate_key(
                limits,
                &format!("key:{}", limits.key),
                "tokens",
                window.minute,
            ),
            self.budget_key(window, limits),
        ]
    }

    fn budget_key(&self, window: &Window, limits: &Limits) -> String {
        format!(
            "{}:{{{}}}:budget:{}",
            self.prefix,
            limits.project,
            window.month.format("%Y-%m")
        )
    }

    /// The shared budgets' counters, all in one slot of their own.
    fn shared_keys<'a>(
        &'a self,
        window: &'a Window,
        limits: &'a Limits,
    ) -> impl Iterator<Item = String> + 'a {
        limits.shared.iter().map(move |b| {
            let (start, _) = window.period(b.period);
            format!("{0}:{{{0}-budgets}}:{1}:{start}", self.prefix, b.id)
        })
    }

    async fn settle_shared(
        &self,
        window: &Window,
        limits: &Limits,
        cost_micros: i64,
    ) -> Result<(), StoreError> {
        if limits.shared.is_empty() || cost_micros == 0 {
            return Ok(());
        }
        let mut invocation = self.settle_shared.prepare_invoke();
        for key in self.shared_keys(window, limits) {
            invocation.key(key);
        }
        invocation.arg(cost_micros);
        let mut connection = self.connection.clone();
        let _: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(error)?;
        Ok(())
    }

    /// Reserves `demand`'s cost in every shared budget, or says which refuses it.
    async fn reserve_shared(
        &self,
        window: &Window,
        limits: &Limits,
        demand: Demand,
        baselines: &Baselines,
    ) -> Result<Option<Reserved>, StoreError> {
        if limits.shared.is_empty() {
            return Ok(None);
        }
        let mut invocation = self.reserve_shared.prepare_invoke();
        for key in self.shared_keys(window, limits) {
            invocation.key(key);
        }
        invocation.arg(demand.cost_micros);
        for (i, budget) in limits.shared.iter().enumerate() {
            let (_, left_secs) = window.period(budget.period);
            invocation
                .arg(budget.amount_micros)
                .arg(baselines.shared(i).unwrap_or(-1))
                .arg(left_secs + BUDGET_GRACE_SECS);
        }
        let mut connection = self.connection.clone();
        let answer: [i64; 3] = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(error)?;
        let index = usize::try_from(answer[1] - 1).unwrap_or(0);
        Ok(match answer[0] {
            1 => None,
            -1 => Some(Reserved::NeedsBaseline(Baseline::Shared(index))),
            _ => Some(Reserved::Refused(
                Limit::SharedBudget(index),
                Counters {
                    shared_spent_micros: answer[2],
                    ..Counters::default()
                },
            )),
        })
    }
}

fn error(e: redis::RedisError) -> StoreError {
    // The error's text can carry the URL; its kind and detail do not.
    StoreError(format!(
        "Redis: {} {}",
        e.category(),
        e.detail().unwrap_or_default()
    ))
}

#[async_trait::async_trait]
impl LimitStore for RedisStore {
    async fn reserve(
        &self,
        window: &Window,
        limits: &Limits,
        demand: Demand,
        baselines: &Baselines,
    ) -> Result<Reserved, StoreError> {
        if let Some(answer) = self
            .reserve_shared(window, limits, demand, baselines)
            .await?
        {
            return Ok(answer);
        }
        let answer = self
            .reserve_project(window, limits, demand, baselines)
            .await;
        if !matches!(answer, Ok(Reserved::Admitted(_))) {
            self.settle_shared(window, limits, -demand.cost_micros)
                .await?;
        }
        answer
    }

    async fn settle(
        &self,
        window: &Window,
        limits: &Limits,
        tokens: i64,
        cost_micros: i64,
    ) -> Result<(), StoreError> {
        let [project_tokens, key_tokens, budget] = self.settled_keys(window, limits);
        let mut connection = self.connection.clone();
        let _: i64 = self
            .settle
            .key(project_tokens)
            .key(key_tokens)
            .key(budget)
            .arg(tokens)
            .arg(cost_micros)
            .invoke_async(&mut connection)
            .await
            .map_err(error)?;
        self.settle_shared(window, limits, cost_micros).await
    }

    fn settle_soon(&self, window: &Window, limits: &Limits, tokens: i64, cost_micros: i64) {
        self.sender.get_or_init(|| {
            tokio::spawn(send_settlements(
                self.unsent.clone(),
                self.connection.clone(),
            ));
        });
        let [project_tokens, key_tokens, budget] = self.settled_keys(window, limits);
        let slot = limits.project.to_string();
        self.unsent.add(&slot, project_tokens, tokens);
        self.unsent.add(&slot, key_tokens, tokens);
        self.unsent.add(&slot, budget, cost_micros);
        let shared_slot = format!("{}-budgets", self.prefix);
        for key in self.shared_keys(window, limits) {
            self.unsent.add(&shared_slot, key, cost_micros);
        }
        self.unsent.wake.notify_one();
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

impl RedisStore {
    /// The rates' and the project budget's reservation: one script in the project's
    /// slot.
    async fn reserve_project(
        &self,
        window: &Window,
        limits: &Limits,
        demand: Demand,
        baselines: &Baselines,
    ) -> Result<Reserved, StoreError> {
        let mut invocation = self.reserve.prepare_invoke();
        for key in self.keys(window, limits) {
            invocation.key(key);
        }
        for rate in limits.rates() {
            invocation.arg(rate.map_or(-1, |r| r as i64));
        }
        invocation
            .arg(demand.tokens)
            .arg(limits.budget_micros.unwrap_or(-1))
            .arg(demand.cost_micros)
            .arg(baselines.project.unwrap_or(-1))
            .arg(WINDOW_TTL_SECS)
            .arg(window.month_left_secs + BUDGET_GRACE_SECS);
        let mut connection = self.connection.clone();
        let answer: [i64; 7] = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(error)?;
        let counters = Counters {
            rates: [answer[2], answer[3], answer[4], answer[5]],
            spent_micros: answer[6],
            shared_spent_micros: 0,
        };
        Ok(match (answer[0], answer[1]) {
            (1, _) => Reserved::Admitted(counters),
            (-1, _) => Reserved::NeedsBaseline(Baseline::Project),
            (_, 5) => Reserved::Refused(Limit::Budget, counters),
            (_, i) => Reserved::Refused(
                usize::try_from(i - 1)
                    .ok()
                    .and_then(|i| Limit::RATES.get(i).copied())
                    .unwrap_or(Limit::ProjectRequests),
                counters,
            ),
        })
    }
}
