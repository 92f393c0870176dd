//! Slices of the Redis counters that one replica holds, so that most requests are
//! admitted without a round trip to Redis.
//!
//! A slice is counted in Redis when it is taken, exactly like a reservation, so
//! every replica's admissions together never pass a limit: what a slice costs is
//! early refusal (another replica holds room it has not used yet) and coarser
//! `x-ratelimit-remaining-*` headers, never overshoot. A slice is at most
//! `STRATA_PROXY_LIMIT_SLICE` requests' worth and at most `1/SHARE` of the room left, so
//! near a limit slices shrink to nothing and every request asks Redis. Slices idle
//! for [`IDLE`] are given back; settlements are credited to the slice they belong to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use uuid::Uuid;

use super::{Demand, Limits, Window};

/// How many requests' worth of each counter a replica asks for beyond a request,
/// unless configured.
pub const DEFAULT_SLICE_REQUESTS: u32 = 64;
/// A slice takes at most this fraction (1/SHARE) of the room left under a limit.
pub(super) const SHARE: i64 = 16;
/// Slices unused this long go back to Redis.
pub(super) const IDLE: Duration = Duration::from_secs(1);
/// How long a request waits at most for this replica's asks under way to land.
const WAIT_FOR_ASKS: Duration = Duration::from_secs(1);

/// The counters a request moves, in the order of the Redis keys: the project's
/// requests and tokens this minute, the key's requests and tokens, the project's
/// budget this month.
pub(super) const COUNTERS: usize = 5;
pub(super) type Amounts = [i64; COUNTERS];

/// One set of counters: whose, which minute and month, under which limits (a
/// changed limit starts a new lease; the old one goes back when idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct LeaseKey {
    pub project: Uuid,
    pub key: Uuid,
    pub minute: i64,
    pub month: NaiveDate,
    /// Each counter's limit; -1: none (the counter is not kept).
    pub limits: Amounts,
}

impl LeaseKey {
    pub fn of(window: &Window, limits: &Limits) -> Self {
        let rates = limits.rates().map(|r| r.map_or(-1, |r| r as i64));
        Self {
            project: limits.project,
            key: limits.key,
            minute: window.minute,
            month: window.month,
            limits: [
                rates[0],
                rates[1],
                rates[2],
                rates[3],
                limits.budget_micros.unwrap_or(-1),
            ],
        }
    }

    pub fn limited(&self, i: usize) -> bool {
        self.limits[i] >= 0
    }

    /// What `demand` adds to each counter kept (0 for the others).
    pub fn adds(&self, demand: Demand) -> Amounts {
        let tokens = i64::try_from(demand.tokens).unwrap_or(i64::MAX);
        let all = [1, tokens, 1, tokens, demand.cost_micros];
        std::array::from_fn(|i| if self.limited(i) { all[i] } else { 0 })
    }
}

struct Lease {
    /// Counted in Redis, not used yet (negative: used more than counted, owed).
    held: Amounts,
    /// Each counter in Redis at this replica's last answer from it.
    seen: Amounts,
    /// The last request's adds: a slice is a whole number of them.
    unit: Amounts,
    used_at: Instant,
    /// Asks of Redis under way, by sequence number.
    asking: Vec<u64>,
    /// Whether the last ask that landed left a request's worth of every counter (so
    /// those under way probably will too).
    refilling: bool,
}

impl Lease {
    fn new(unit: Amounts) -> Self {
        Self {
            held: [0; COUNTERS],
            seen: [0; COUNTERS],
            unit,
            used_at: Instant::now(),
            asking: Vec::new(),
            refilling: false,
        }
    }

    /// The counters as this replica sees them: Redis's last figure less what it holds.
    fn used(&self) -> Amounts {
        std::array::from_fn(|i| self.seen[i].saturating_sub(self.held[i]))
    }

    fn is_spent(&self) -> bool {
        self.asking.is_empty() && self.held.iter().all(|h| *h == 0)
    }
}

/// An ask of Redis for one request: what it takes from the lease, what it needs
/// from Redis, and how much more the lease would like.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask {
    pub seq: u64,
    pub have: Amounts,
    pub need: Amounts,
    pub want: Amounts,
    pub unit: Amounts,
}

pub(super) struct Leases {
    /// Requests' worth per slice; 0: no slices, every request asks Redis.
    slice: i64,
    leases: Mutex<HashMap<LeaseKey, Lease>>,
    next: AtomicU64,
    landed: tokio::sync::Notify,
}

impl Leases {
    pub fn new(slice_requests: u32) -> Self {
        Self {
            slice: i64::from(slice_requests),
            leases: Mutex::default(),
            next: AtomicU64::default(),
            landed: tokio::sync::Notify::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseKey, Lease>> {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits `adds` from the lease alone if it covers every counter: the counters
    /// as this replica sees them after it.
    pub fn take(&self, key: &LeaseKey, adds: Amounts) -> Option<Amounts> {
        let mut leases = self.lock();
        let lease = leases.get_mut(key)?;
        // A counter the request adds nothing to cannot refuse it, even one the lease
        // owes to.
        if (0..COUNTERS).any(|i| adds[i] > 0 && lease.held[i] < adds[i]) {
            return None;
        }
        for (held, add) in lease.held.iter_mut().zip(adds) {
            *held -= add;
        }
        lease.used_at = Instant::now();
        Some(lease.used())
    }

    /// Whether an ask under way should bring a slice, when the lease could not
    /// admit a request: better to wait for it than to ask Redis too, as every
    /// request arriving during a round trip otherwise would.
    pub fn coming(&self, key: &LeaseKey) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|l| l.refilling && !l.asking.is_empty())
    }

    /// Starts an ask of Redis: takes what the lease has towards `adds`, and wants a
    /// slice of `slice` requests beyond what it holds.
    pub fn begin(&self, key: &LeaseKey, adds: Amounts) -> Ask {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut leases = self.lock();
        let lease = leases.entry(*key).or_insert_with(|| Lease::new(adds));
        lease.unit = adds;
        lease.used_at = Instant::now();
        lease.asking.push(seq);
        let have: Amounts = std::array::from_fn(|i| lease.held[i].clamp(0, adds[i].max(0)));
        for (held, have) in lease.held.iter_mut().zip(have) {
            *held -= have;
        }
        Ask {
            seq,
            have,
            need: std::array::from_fn(|i| adds[i] - have[i]),
            want: std::array::from_fn(|i| {
                self.slice
                    .saturating_mul(adds[i])
                    .saturating_sub(lease.held[i])
                    .max(0)
            }),
            unit: adds,
        }
    }

    /// Redis admitted the ask and counted `extra` for the lease; `counted` is each
    /// counter after it. The counters as this replica sees them.
    pub fn admitted(&self, key: &LeaseKey, ask: &Ask, extra: Amounts, counted: Amounts) -> Amounts {
        let used = {
            let mut leases = self.lock();
            let lease = leases.entry(*key).or_insert_with(|| Lease::new(ask.unit));
            for (held, extra) in lease.held.iter_mut().zip(extra) {
                *held += extra;
            }
            lease.refilling =
                (0..COUNTERS).all(|i| ask.unit[i] <= 0 || lease.held[i] >= ask.unit[i]);
            lease.seen = counted;
            lease.asking.retain(|s| *s != ask.seq);
            let used = lease.used();
            if lease.is_spent() {
                leases.remove(key);
            }
            used
        };
        self.landed.notify_waiters();
        used
    }

    /// Redis did not admit the ask (refused, needs a baseline, failed): what it took
    /// from the lease goes back.
    pub fn not_admitted(&self, key: &LeaseKey, ask: &Ask) {
        {
            let mut leases = self.lock();
            let lease = leases.entry(*key).or_insert_with(|| Lease::new(ask.unit));
            for (held, have) in lease.held.iter_mut().zip(ask.have) {
                *held += have;
            }
            lease.refilling = false;
            lease.asking.retain(|s| *s != ask.seq);
            if lease.is_spent() {
                leases.remove(key);
            }
        }
        self.landed.notify_waiters();
    }

    /// Waits until the asks of this lease under way now have landed (not those begun
    /// later): a slice one of them brings may admit a request that Redis refused, or
    /// that the lease could not admit, because of it.
    pub async fn wait_for_asks_under_way(&self, key: &LeaseKey) {
        let before = self.next.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + WAIT_FOR_ASKS;
        loop {
            let landed = self.landed.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            let pending = self
                .lock()
                .get(key)
                .is_some_and(|l| l.asking.iter().any(|s| *s < before));
            if !pending || tokio::time::timeout_at(deadline, landed).await.is_err() {
                return;
            }
        }
    }

    /// Credits a settlement (`delta`: used less reserved, by counter) to its lease.
    /// Returns what Redis must be told instead: all of it when there is no lease,
    /// else, when the lease would hold more than two slices, all but one.
    pub fn settle(&self, key: &LeaseKey, delta: Amounts) -> Amounts {
        let mut leases = self.lock();
        let Some(lease) = leases.get_mut(key) else {
            return delta;
        };
        let mut to_redis = [0; COUNTERS];
        for i in 0..COUNTERS {
            if !key.limited(i) {
                continue;
            }
            lease.held[i] = lease.held[i].saturating_sub(delta[i]);
            // Past two slices, back to one: Redis's counter falls by the rest (not at
            // every settlement, as a cap of two slices would).
            let slice = self.slice.saturating_mul(lease.unit[i].max(0));
            if lease.held[i] > 2 * slice {
                to_redis[i] = -(lease.held[i] - slice);
                lease.held[i] = slice;
            }
        }
        lease.used_at = Instant::now();
        to_redis
    }

    /// Takes the leases unused for `idle` (every lease with `Duration::ZERO`, when
    /// the proxy stops) with nothing under way: what each held, to give back.
    pub fn sweep(&self, idle: Duration) -> Vec<(LeaseKey, Amounts)> {
        let now = Instant::now();
        let mut leases = self.lock();
        let mut swept = Vec::new();
        leases.retain(|key, lease| {
            let keep = !lease.asking.is_empty() || now.duration_since(lease.used_at) < idle;
            if !keep && lease.held.iter().any(|h| *h != 0) {
                swept.push((*key, lease.held));
            }
            keep
        });
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(limits: Amounts) -> LeaseKey {
        LeaseKey {
            project: Uuid::from_u128(1),
            key: Uuid::from_u128(2),
            minute: 1,
            month: NaiveDate::default(),
            limits,
        }
    }

    #[test]
    fn a_request_is_admitted_locally_only_when_every_counter_covers_it() {
        let leases = Leases::new(DEFAULT_SLICE_REQUESTS);
        let k = key([100, 10_000, -1, -1, -1]);
        let adds = k.adds(Demand {
            tokens: 50,
            cost_micros: 7,
        });
        assert_eq!(adds, [1, 50, 0, 0, 0], "unlimited counters add nothing");
        assert_eq!(leases.take(&k, adds), None, "no lease yet");
        let ask = leases.begin(&k, adds);
        assert_eq!((ask.have, ask.need), ([0; 5], adds));
        assert_eq!(ask.want, [64, 3_200, 0, 0, 0]);
        // Redis counted this request and a slice of 3 requests and 100 tokens.
        let used = leases.admitted(&k, &ask, [3, 100, 0, 0, 0], [4, 150, 0, 0, 0]);
        assert_eq!(used, [1, 50, 0, 0, 0]);
        assert_eq!(leases.take(&k, adds), Some([2, 100, 0, 0, 0]));
        assert_eq!(leases.take(&k, adds), Some([3, 150, 0, 0, 0]));
        // One request left, but no tokens: Redis is asked, with the request taken.
        assert_eq!(leases.take(&k, adds), None);
        let ask = leases.begin(&k, adds);
        assert_eq!((ask.have, ask.need), ([1, 0, 0, 0, 0], [0, 50, 0, 0, 0]));
        // Refused: the request goes back to the lease.
        leases.not_admitted(&k, &ask);
        let ask = leases.begin(&k, adds);
        assert_eq!(ask.have, [1, 0, 0, 0, 0]);
    }

    #[test]
    fn settlements_credit_the_lease_and_give_back_beyond_two_slices() {
        let leases = Leases::new(DEFAULT_SLICE_REQUESTS);
        let k = key([-1, 1_000_000, -1, -1, 10_000]);
        let adds = [0, 100, 0, 0, 10];
        let delta = [0, -60, 0, 0, -4];
        assert_eq!(leases.settle(&k, delta), delta, "no lease: all to Redis");
        let ask = leases.begin(&k, adds);
        leases.admitted(&k, &ask, [0, 200, 0, 0, 20], [0, 300, 0, 0, 30]);
        assert_eq!(leases.settle(&k, delta), [0; 5]);
        // The request used 40 of its 100 tokens and 6 of its 10 micro-dollars.
        assert_eq!(leases.take(&k, adds), Some([0, 140, 0, 0, 16]));
        // Used more than reserved: the lease owes it, and cannot admit until refilled,
        // but a request that costs nothing and adds no tokens is not held back by it.
        leases.settle(&k, [0, 500, 0, 0, 0]);
        assert_eq!(leases.take(&k, adds), None);
        assert!(leases.take(&k, [0; 5]).is_some());
        // Two slices are 12,800 tokens; a huge credit sends all but one slice back.
        let back = leases.settle(&k, [0, -20_000, 0, 0, 0]);
        assert_eq!(back, [0, -(160 - 500 + 20_000 - 6_400), 0, 0, 0]);
        assert_eq!(
            leases.settle(&k, [0, -6_400, 0, 0, 0]),
            [0; 5],
            "two slices"
        );
        assert_eq!(leases.settle(&k, [0, -1, 0, 0, 0]), [0, -6_401, 0, 0, 0]);
    }

    #[test]
    fn idle_leases_are_swept_with_what_they_hold() {
        let leases = Leases::new(DEFAULT_SLICE_REQUESTS);
        let k = key([100, -1, -1, -1, -1]);
        let ask = leases.begin(&k, [1, 0, 0, 0, 0]);
        assert!(
            leases.sweep(Duration::ZERO).is_empty(),
            "an ask is under way"
        );
        leases.admitted(&k, &ask, [5, 0, 0, 0, 0], [6, 0, 0, 0, 0]);
        assert!(leases.sweep(IDLE).is_empty(), "just used");
        assert_eq!(leases.sweep(Duration::ZERO), vec![(k, [5, 0, 0, 0, 0])]);
        assert_eq!(leases.take(&k, [1, 0, 0, 0, 0]), None, "gone");
        // A lease that got no slice is not kept.
        let ask = leases.begin(&k, [1, 0, 0, 0, 0]);
        leases.admitted(&k, &ask, [0; 5], [7, 0, 0, 0, 0]);
        assert!(leases.sweep(Duration::ZERO).is_empty());
    }

    #[test]
    fn requests_wait_for_a_slice_under_way_only_while_slices_come() {
        let leases = Leases::new(DEFAULT_SLICE_REQUESTS);
        let k = key([1_000, -1, -1, -1, -1]);
        let one = [1, 0, 0, 0, 0];
        assert!(!leases.coming(&k), "no lease");
        let first = leases.begin(&k, one);
        assert!(!leases.coming(&k), "no slice has come yet");
        leases.admitted(&k, &first, [1, 0, 0, 0, 0], [2, 0, 0, 0, 0]);
        assert!(leases.take(&k, one).is_some());
        let second = leases.begin(&k, one);
        assert!(leases.coming(&k));
        // Near the limit the slices stop: the next requests ask for themselves.
        leases.admitted(&k, &second, [0; 5], [998, 0, 0, 0, 0]);
        let third = leases.begin(&k, one);
        assert!(!leases.coming(&k));
        leases.not_admitted(&k, &third);
    }

    #[tokio::test]
    async fn a_refused_request_waits_for_the_asks_under_way_only() {
        let leases = std::sync::Arc::new(Leases::new(DEFAULT_SLICE_REQUESTS));
        let k = key([100, -1, -1, -1, -1]);
        let one = [1, 0, 0, 0, 0];
        // Nothing under way: no wait.
        tokio::time::timeout(
            Duration::from_millis(100),
            leases.wait_for_asks_under_way(&k),
        )
        .await
        .expect("nothing to wait for");
        let first = leases.begin(&k, one);
        let second = leases.begin(&k, one);
        // The second was refused; the first (begun earlier or later, whichever Redis
        // ran first) may bring a slice.
        leases.not_admitted(&k, &second);
        let waiting = {
            let leases = leases.clone();
            tokio::spawn(async move { leases.wait_for_asks_under_way(&k).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the first ask is under way");
        // An ask begun after the wait started does not hold it.
        let third = leases.begin(&k, one);
        leases.admitted(&k, &first, [3, 0, 0, 0, 0], [4, 0, 0, 0, 0]);
        tokio::time::timeout(Duration::from_millis(500), waiting)
            .await
            .expect("woken when the first landed")
            .unwrap();
        assert_eq!(leases.take(&k, one), Some([2, 0, 0, 0, 0]));
        leases.not_admitted(&k, &third);
    }
}
