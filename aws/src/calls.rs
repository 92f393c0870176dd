//! Counts every AWS call by service, operation and outcome: for Prometheus, and
//! for `strata reconcile`'s summary ("0 mutating calls").

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::AwsError;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum Outcome {
    Ok,
    Error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: &'static str,
    operation: &'static str,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: &'static str,
}

/// Calls made so far, keyed by (service, operation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts(pub BTreeMap<(&'static str, &'static str), u64>);

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Calls that change something on AWS.
    pub fn mutating(&self) -> u64 {
        self.0
            .iter()
            .filter(|((_, op), _)| is_mutating(op))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn reads(&self) -> u64 {
        self.total() - self.mutating()
    }

    /// What happened between `earlier` and now.
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts(
            self.0
                .iter()
                .map(|(k, n)| (*k, n - earlier.0.get(k).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
}

/// Reads start with one of these verbs; everything else changes state.
fn is_mutating(operation: &str) -> bool {
    !["Get", "List", "Describe"]
        .iter()
        .any(|verb| operation.starts_with(verb))
}

#[derive(Clone)]
pub struct AwsCalls {
    calls: Family<CallLabels, Counter>,
    durations: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    counts: Arc<Mutex<CallCounts>>,
}

impl std::fmt::Debug for AwsCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCalls")
            .field("counts", &self.snapshot())
            .finish()
    }
}

fn call_histogram() -> Histogram {
    Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

impl Default for AwsCalls {
    fn default() -> Self {
        Self::new()
    }
}

impl AwsCalls {
    pub fn new() -> Self {
        Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(call_histogram),
            counts: Arc::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "aws_calls",
            "AWS calls by service, operation and outcome",
            self.calls.clone(),
        );
        registry.register(
            "aws_call_duration_seconds",
            "AWS call latency by service",
            self.durations.clone(),
        );
    }

    pub fn snapshot(&self) -> CallCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Runs one call and counts it.
    pub async fn track<T>(
        &self,
        service: &'static str,
        operation: &'static str,
        call: impl Future<Output = Result<T, AwsError>>,
    ) -> Result<T, AwsError> {
        let started = Instant::now();
        let result = call.await;
        let outcome = if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        self.calls
            .get_or_create(&CallLabels {
                service,
                operation,
                outcome,
            })
            .inc();
        self.durations
            .get_or_create(&ServiceLabels { service })
            .observe(started.elapsed().as_secs_f64());
        if let Ok(mut counts) = self.counts.lock() {
            *counts.0.entry((service, operation)).or_default() += 1;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes() {
        let mut c = CallCounts::default();
        c.0.insert(("iam", "GetRole"), 3);
        c.0.insert(("iam", "PutRolePolicy"), 1);
        c.0.insert(("tagging", "GetResources"), 2);
        assert_eq!((c.total(), c.mutating(), c.reads()), (6, 1, 5));
    }
}
