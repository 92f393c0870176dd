//! How the reconciler's own bookkeeping fails (the store, leases, the queue, stored
//! reports) — as opposed to a project's AWS steps, whose failures are recorded on the
//! project as conditions.

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Core(#[from] strata_core::CoreError),
    #[error("a stored report or condition cannot be encoded or read: {0}")]
    Json(#[from] serde_json::Error),
}
