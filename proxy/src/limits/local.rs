//! Counters in this process's memory: exact for one proxy (the embedded default).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDate;
use uuid::Uuid;

use super::{
    Baseline, Baselines, Counters, Demand, Limit, LimitStore, Limits, Reserved, StoreError, Window,
    decide, over_shared,
};

/// Per-minute counters of one scope: `[requests, tokens]`.
type Rate = [i64; 2];

#[derive(Default)]
struct State {
    /// By (project or key id, minute).
    rates: HashMap<(Uuid, i64), Rate>,
    /// By (project, month): spend plus reservations in flight.
    budgets: HashMap<(Uuid, NaiveDate), i64>,
    /// By (hard budget, its period's first day): the same.
    shared: HashMap<(Uuid, NaiveDate), i64>,
    /// The minute up to which old windows were dropped.
    swept: i64,
}

#[derive(Default)]
pub struct LocalStore {
    state: Mutex<State>,
}

impl LocalStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn apply(&self, window: &Window, limits: &Limits, tokens: i64, cost_micros: i64) {
        let mut state = self.lock();
        for id in [limits.project, limits.key] {
            if let Some(rate) = state.rates.get_mut(&(id, window.minute)) {
                rate[1] = rate[1].saturating_add(tokens);
            }
        }
        if let Some(spent) = state.budgets.get_mut(&(limits.project, window.month)) {
            *spent = spent.saturating_add(cost_micros);
        }
        for key in State::shared_keys(window, limits) {
            if let Some(spent) = state.shared.get_mut(&key) {
                *spent = spent.saturating_add(cost_micros);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// Forgets windows before the previous minute, once per minute.
    fn sweep(&mut self, minute: i64) {
        if self.swept < minute {
            self.rates.retain(|(_, m), _| *m >= minute - 1);
            self.swept = minute;
        }
    }

    fn counters(&self, window: &Window, limits: &Limits) -> Counters {
        let rate = |id| {
            self.rates
                .get(&(id, window.minute))
                .copied()
                .unwrap_or_default()
        };
        let [pr, pt] = rate(limits.project);
        let [kr, kt] = rate(limits.key);
        Counters {
            rates: [pr, pt, kr, kt],
            spent_micros: self
                .budgets
                .get(&(limits.project, window.month))
                .copied()
                .unwrap_or(0),
            shared_spent_micros: 0,
        }
    }

    fn shared_keys<'a>(
        window: &'a Window,
        limits: &'a Limits,
    ) -> impl Iterator<Item = (Uuid, NaiveDate)> + 'a {
        limits
            .shared
            .iter()
            .map(|b| (b.id, window.period(b.period).0))
    }
}

#[async_trait::async_trait]
impl LimitStore for LocalStore {
    async fn reserve(
        &self,
        window: &Window,
        limits: &Limits,
        demand: Demand,
        baselines: &Baselines,
    ) -> Result<Reserved, StoreError> {
        let mut state = self.lock();
        state.sweep(window.minute);
        if limits.budget_micros.is_some() {
            let month = (limits.project, window.month);
            if let std::collections::hash_map::Entry::Vacant(entry) = state.budgets.entry(month) {
                match baselines.project {
                    Some(b) => {
                        entry.insert(b);
                    }
                    None => return Ok(Reserved::NeedsBaseline(Baseline::Project)),
                }
            }
        }
        for (i, key) in State::shared_keys(window, limits).enumerate() {
            if let std::collections::hash_map::Entry::Vacant(entry) = state.shared.entry(key) {
                match baselines.shared(i) {
                    Some(b) => {
                        entry.insert(b);
                    }
                    None => return Ok(Reserved::NeedsBaseline(Baseline::Shared(i))),
                }
            }
        }
        let mut counters = state.counters(window, limits);
        if let Err(limit) = decide(limits, demand, &counters) {
            return Ok(Reserved::Refused(limit, counters));
        }
        let shared_spent = State::shared_keys(window, limits)
            .map(|key| state.shared.get(&key).copied().unwrap_or(0));
        if let Some((i, spent)) = over_shared(limits, demand, shared_spent) {
            counters.shared_spent_micros = spent;
            return Ok(Reserved::Refused(Limit::SharedBudget(i), counters));
        }
        let tokens = demand.tokens as i64;
        let rates = limits.rates();
        for (id, request_limit, token_limit) in [
            (limits.project, rates[0], rates[1]),
            (limits.key, rates[2], rates[3]),
        ] {
            if request_limit.is_some() || token_limit.is_some() {
                let rate = state.rates.entry((id, window.minute)).or_default();
                rate[0] += 1;
                rate[1] += tokens;
            }
        }
        if limits.budget_micros.is_some()
            && let Some(spent) = state.budgets.get_mut(&(limits.project, window.month))
        {
            *spent = spent.saturating_add(demand.cost_micros);
        }
        for key in State::shared_keys(window, limits) {
            if let Some(spent) = state.shared.get_mut(&key) {
                *spent = spent.saturating_add(demand.cost_micros);
            }
        }
        counters = state.counters(window, limits);
        Ok(Reserved::Admitted(counters))
    }

    async fn settle(
        &self,
        window: &Window,
        limits: &Limits,
        tokens: i64,
        cost_micros: i64,
    ) -> Result<(), StoreError> {
        self.apply(window, limits, tokens, cost_micros);
        Ok(())
    }

    fn settle_soon(&self, window: &Window, limits: &Limits, tokens: i64, cost_micros: i64) {
        self.apply(window, limits, tokens, cost_micros);
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
