//! One Prometheus registry per app (no global state, so tests can run many apps in
//! one process), shared by the parts that add collectors to it.

use std::sync::Mutex;

use prometheus_client::registry::Registry;

pub struct MetricsRegistry(Mutex<Registry>);

impl From<Registry> for MetricsRegistry {
    fn from(registry: Registry) -> Self {
        Self(Mutex::new(registry))
    }
}

impl MetricsRegistry {
    /// Adds collectors owned by other parts (reconciler, AWS adapters).
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.0.lock() {
            add(&mut registry);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.0.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn renders_what_was_registered_with_the_prefix() {
        let counter = Counter::<u64>::default();
        let mut inner = Registry::with_prefix("strata");
        inner.register("things", "Things seen", counter.clone());
        let registry = MetricsRegistry::from(inner);
        let late = Counter::<u64>::default();
        registry.register(|r| r.register("late", "Added later", late.clone()));
        counter.inc();
        let text = registry.render();
        assert!(text.contains("strata_things_total 1"), "{text}");
        assert!(text.contains("strata_late_total 0"), "{text}");
    }
}
