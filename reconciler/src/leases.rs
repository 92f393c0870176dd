//! The reconciler's leases (`project:{id}`, `environment-pass`), held in this
//! process's name; the claiming rules are in `strata_core::services`.

use std::time::Duration;

use strata_core::services::Services;

use crate::Reconciler;
use crate::error::ReconcileError;

fn services(r: &Reconciler) -> Services {
    Services::new(r.store.clone(), r.clock.clone())
}

pub async fn claim(r: &Reconciler, name: &str, ttl: Duration) -> Result<bool, ReconcileError> {
    services(r)
        .claim_lease(name, &r.owner, ttl)
        .await
        .map_err(ReconcileError::from)
}

pub async fn release(r: &Reconciler, name: &str) -> Result<(), ReconcileError> {
    services(r)
        .release_lease(name, &r.owner)
        .await
        .map_err(ReconcileError::from)
}
