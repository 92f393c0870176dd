//! Names for a running process, used where replicas must tell each other apart.

/// A name for this process as a lease or claim holder, unique across replicas and
/// restarts.
pub fn lease_owner() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple())
}
