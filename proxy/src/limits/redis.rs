//! Counters in Redis, shared by every proxy replica. Each reservation is one Lua
//! script (Redis runs a script alone, so check-and-count is atomic across replicas);
//! every key of a request carries the project in a hash tag, so the script's keys sit
//! in one slot of a Redis Cluster too. Hard budgets shared by several projects live
//! in a slot of their own and are reserved first, by a second script: if the
//! project's script then refuses, their reservation is given back.
//!
//! The project's script also counts a slice of each counter for this replica
//! ([`super::lease`]): later requests are admitted from the slice without a round
//! trip, and their settlements are credited to it. Other settlements, and slices
//! given back, are summed per counter and sent every few milliseconds, one script per
//! slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::control::StartError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::lease::{self, IDLE, LeaseKey, Leases};
use super::{
    Baseline, Baselines, Counters, Demand, Limit, LimitStore, Limits, Reserved, StoreError, Window,
};

/// KEYS: project requests, project tokens, key requests, key tokens (this minute),
/// budget (this month). ARGV, five of each, one per key: limit (-1: not kept), what
/// the request needs beyond what the replica's lease holds, the slice the lease
/// wants, the request's own amount (a slice is a whole number of them); then the
/// budget's baseline (-1: unknown), window TTL, budget TTL, and the share of the
/// room left a slice may take (1/n).
/// Returns `{status, limit, c1..c5, e1..e5}`: status 1 admitted, 0 refused (`limit`
/// is the key's number, 1-4 the rates, 5 the budget), -1 needs a baseline; each
/// counter after it, and the slice counted for the lease. It counts first and takes
/// a refusal back; a window's TTL is set when it is created.
const RESERVE: &str = r"
local lim, need, want, unit = {}, {}, {}, {}
local cur, extra = {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}
for i = 1, 5 do
  lim[i] = tonumber(ARGV[i])
  need[i] = tonumber(ARGV[5 + i])
  want[i] = tonumber(ARGV[10 + i])
  unit[i] = tonumber(ARGV[15 + i])
end
if lim[5] >= 0 and redis.call('EXISTS', KEYS[5]) == 0 then
  if tonumber(ARGV[21]) < 0 then return {-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} end
  redis.call('SET', KEYS[5], ARGV[21], 'EX', ARGV[23])
end
for i = 1, 5 do
  if lim[i] >= 0 then
    if need[i] > 0 then
      cur[i] = redis.call('INCRBY', KEYS[i], need[i])
      if i < 5 and cur[i] == need[i] then redis.call('EXPIRE', KEYS[i], ARGV[22]) end
    else
      cur[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
    end
  end
end
local refused = 0
for i = 1, 5 do
  if refused == 0 and need[i] > 0 and lim[i] >= 0 and cur[i] > lim[i] then refused = i end
end
if refused > 0 then
  for i = 1, 5 do
    if lim[i] >= 0 and need[i] > 0 then cur[i] = redis.call('DECRBY', KEYS[i], need[i]) end
  end
  return {0, refused, cur[1], cur[2], cur[3], cur[4], cur[5], 0, 0, 0, 0, 0}
end
local share = tonumber(ARGV[24])
for i = 1, 5 do
  if lim[i] >= 0 and unit[i] > 0 and want[i] > 0 then
    local e = math.min(want[i], math.floor((lim[i] - cur[i]) / share))
    e = e - e % unit[i]
    if e > 0 then
      extra[i] = e
      cur[i] = redis.call('INCRBY', KEYS[i], e)
      if i < 5 and cur[i] == e then redis.call('EXPIRE', KEYS[i], ARGV[22]) end
    end
  end
end
return {1, 0, cur[1], cur[2], cur[3], cur[4], cur[5], extra[1], extra[2], extra[3], extra[4], extra[5]}
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

/// KEYS: counters in one slot. ARGV: each one's delta. Only counters that still
/// exist change (an expired window needs no correction; a lost budget counter
/// restarts from the control plane's figure).
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
        send_sums(&script, unsent.take(), &connection).await;
    }
}

/// One script per slot, all at once.
async fn send_sums(
    script: &redis::Script,
    by_slot: HashMap<String, HashMap<String, i64>>,
    connection: &ConnectionManager,
) {
    let sends = by_slot
        .into_values()
        .map(|sums| add_sums(script, sums, connection));
    for result in futures_util::future::join_all(sends).await {
        if let Err(e) = result {
            // The counters keep the reservations: they over-count until the window
            // or period ends, refusing early rather than late.
            tracing::warn!(limits.store = "redis", error.cause = %e, "cannot send settlements");
        }
    }
}

/// Adds each delta to its counter (all in one slot), by [`SETTLE_SUMS`].
async fn add_sums(
    script: &redis::Script,
    sums: impl IntoIterator<Item = (String, i64)>,
    connection: &ConnectionManager,
) -> Result<(), StoreError> {
    let mut invocation = script.prepare_invoke();
    for (key, delta) in sums {
        invocation.key(key).arg(delta);
    }
    let mut connection = connection.clone();
    let _: i64 = invocation
        .invoke_async(&mut connection)
        .await
        .map_err(error)?;
    Ok(())
}

/// Gives the slices idle for [`IDLE`] back, every half of it.
async fn return_idle_leases(leases: Arc<Leases>, unsent: Arc<Unsent>, prefix: String) {
    loop {
        tokio::time::sleep(IDLE / 2).await;
        if give_back(&leases, &unsent, &prefix, IDLE) {
            unsent.wake.notify_one();
        }
    }
}

/// Queues what the leases idle for `idle` hold as settlements; whether there was any.
fn give_back(leases: &Leases, unsent: &Unsent, prefix: &str, idle: Duration) -> bool {
    let swept = leases.sweep(idle);
    for (key, held) in &swept {
        let slot = key.project.to_string();
        for (name, held) in counter_keys(prefix, key).into_iter().zip(held) {
            unsent.add(&slot, name, -held);
        }
    }
    !swept.is_empty()
}

/// KEYS: shared budgets' counters. ARGV: cost delta. As [`SETTLE_SUMS`].
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
    settle_sums: redis::Script,
    reserve_shared: redis::Script,
    settle_shared: redis::Script,
    prefix: String,
    unsent: Arc<Unsent>,
    leases: Arc<Leases>,
    /// The tasks that send settlements and give idle slices back, started with the
    /// first request.
    background: OnceLock<()>,
}

/// The Redis keys of a lease's counters, in the order of [`lease::Amounts`]: every
/// one carries the project in a hash tag, so they sit in one slot.
fn counter_keys(prefix: &str, lease: &LeaseKey) -> [String; lease::COUNTERS] {
    let rate = |scope: &str, kind: &str| {
        format!(
            "{prefix}:{{{}}}:{scope}:{kind}:{}",
            lease.project, lease.minute
        )
    };
    let key_scope = format!("key:{}", lease.key);
    [
        rate("project", "requests"),
        rate("project", "tokens"),
        rate(&key_scope, "requests"),
        rate(&key_scope, "tokens"),
        format!(
            "{prefix}:{{{}}}:budget:{}",
            lease.project,
            lease.month.format("%Y-%m")
        ),
    ]
}

impl RedisStore {
    /// Connects lazily (the first request connects; a broken connection reconnects).
    /// `prefix` keeps several strata installations apart on one Redis;
    /// `slice_requests`: how many requests' worth of each counter a replica takes
    /// at once (0: none, every request asks Redis).
    pub fn new(url: &str, prefix: &str, slice_requests: u32) -> Result<Self, StartError> {
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
            settle_sums: redis::Script::new(SETTLE_SUMS),
            reserve_shared: redis::Script::new(RESERVE_SHARED),
            settle_shared: redis::Script::new(SETTLE_SHARED),
            prefix: prefix.to_owned(),
            unsent: Arc::default(),
            leases: Arc::new(Leases::new(slice_requests)),
            background: OnceLock::new(),
        })
    }

    /// The multiplexed connection, for other shared state (response owners).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    fn start_background(&self) {
        self.background.get_or_init(|| {
            tokio::spawn(send_settlements(
                self.unsent.clone(),
                self.connection.clone(),
            ));
            tokio::spawn(return_idle_leases(
                self.leases.clone(),
                self.unsent.clone(),
                self.prefix.clone(),
            ));
        });
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

    /// What Redis must be told of a settlement (the lease takes what it can), by
    /// counter key, with the shared budgets' part.
    fn settlement(
        &self,
        window: &Window,
        limits: &Limits,
        tokens: i64,
        cost_micros: i64,
    ) -> Vec<(String, i64)> {
        let lease = LeaseKey::of(window, limits);
        let to_redis = self
            .leases
            .settle(&lease, [0, tokens, 0, tokens, cost_micros]);
        if to_redis.iter().all(|delta| *delta == 0) {
            return Vec::new();
        }
        counter_keys(&self.prefix, &lease)
            .into_iter()
            .zip(to_redis)
            .filter(|(_, delta)| *delta != 0)
            .collect()
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

/// The counters as a store reports them: the four rates and the project's budget.
fn counters(amounts: lease::Amounts) -> Counters {
    Counters {
        rates: [amounts[0], amounts[1], amounts[2], amounts[3]],
        spent_micros: amounts[4],
        shared_spent_micros: 0,
    }
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
        self.start_background();
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
        let sums = self.settlement(window, limits, tokens, cost_micros);
        if !sums.is_empty() {
            add_sums(&self.settle_sums, sums, &self.connection).await?;
        }
        self.settle_shared(window, limits, cost_micros).await
    }

    fn settle_soon(&self, window: &Window, limits: &Limits, tokens: i64, cost_micros: i64) {
        self.start_background();
        let sums = self.settlement(window, limits, tokens, cost_micros);
        let shared = !limits.shared.is_empty() && cost_micros != 0;
        if sums.is_empty() && !shared {
            return;
        }
        let slot = limits.project.to_string();
        for (key, delta) in sums {
            self.unsent.add(&slot, key, delta);
        }
        let shared_slot = format!("{}-budgets", self.prefix);
        for key in self.shared_keys(window, limits) {
            self.unsent.add(&shared_slot, key, cost_micros);
        }
        self.unsent.wake.notify_one();
    }

    async fn flush(&self) {
        give_back(&self.leases, &self.unsent, &self.prefix, Duration::ZERO);
        send_sums(&self.settle_sums, self.unsent.take(), &self.connection).await;
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

impl RedisStore {
    /// The rates' and the project budget's reservation: from this replica's lease
    /// when it covers the request, else one script in the project's slot that also
    /// counts a slice for the lease.
    async fn reserve_project(
        &self,
        window: &Window,
        limits: &Limits,
        demand: Demand,
        baselines: &Baselines,
    ) -> Result<Reserved, StoreError> {
        let lease = LeaseKey::of(window, limits);
        let adds = lease.adds(demand);
        if let Some(seen) = self.leases.take(&lease, adds) {
            return Ok(Reserved::Admitted(counters(seen)));
        }
        if self.leases.coming(&lease) {
            self.leases.wait_for_asks_under_way(&lease).await;
            if let Some(seen) = self.leases.take(&lease, adds) {
                return Ok(Reserved::Admitted(counters(seen)));
            }
        }
        let ask = self.leases.begin(&lease, adds);
        let mut invocation = self.reserve.prepare_invoke();
        for key in counter_keys(&self.prefix, &lease) {
            invocation.key(key);
        }
        for amounts in [lease.limits, ask.need, ask.want, ask.unit] {
            for amount in amounts {
                invocation.arg(amount);
            }
        }
        invocation
            .arg(baselines.project.unwrap_or(-1))
            .arg(WINDOW_TTL_SECS)
            .arg(window.month_left_secs + BUDGET_GRACE_SECS)
            .arg(lease::SHARE);
        let mut connection = self.connection.clone();
        let answer: [i64; 12] = match invocation.invoke_async(&mut connection).await {
            Ok(answer) => answer,
            Err(e) => {
                self.leases.not_admitted(&lease, &ask);
                return Err(error(e));
            }
        };
        let counted: lease::Amounts = std::array::from_fn(|i| answer[2 + i]);
        let extra: lease::Amounts = std::array::from_fn(|i| answer[7 + i]);
        if answer[0] == 1 {
            let seen = self.leases.admitted(&lease, &ask, extra, counted);
            return Ok(Reserved::Admitted(counters(seen)));
        }
        self.leases.not_admitted(&lease, &ask);
        if answer[0] == -1 {
            return Ok(Reserved::NeedsBaseline(Baseline::Project));
        }
        // Refused, perhaps for a slice another ask of this replica is bringing.
        self.leases.wait_for_asks_under_way(&lease).await;
        if let Some(seen) = self.leases.take(&lease, adds) {
            return Ok(Reserved::Admitted(counters(seen)));
        }
        let limit = match answer[1] {
            5 => Limit::Budget,
            i => usize::try_from(i - 1)
                .ok()
                .and_then(|i| Limit::RATES.get(i).copied())
                .unwrap_or(Limit::ProjectRequests),
        };
        Ok(Reserved::Refused(limit, counters(counted)))
    }
}
