//! How the proxy's plumbing fails: its calls to the control plane (policy snapshot,
//! usage batches, a project's spend this month), and its start-up.

/// A call to the control plane that did not give what it asked for. The causes are
/// `reqwest` errors stripped of their URL (which may carry ids).
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("cannot reach the control plane: {0}")]
    Unreachable(reqwest::Error),
    #[error("the control plane answered HTTP {}", .0.as_u16())]
    Status(reqwest::StatusCode),
    #[error("the control plane's answer cannot be read: {0}")]
    Body(reqwest::Error),
}

impl ControlPlaneError {
    pub fn unreachable(e: reqwest::Error) -> Self {
        Self::Unreachable(e.without_url())
    }

    pub fn body(e: reqwest::Error) -> Self {
        Self::Body(e.without_url())
    }
}

/// Why the proxy cannot start. Redis's errors are shown by their category only: their
/// text may quote the URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("STRATA_REDIS_URL is not a Redis URL: {}", .0.category())]
    RedisUrl(redis::RedisError),
    #[error("cannot set up the Redis connection: {}", .0.category())]
    Redis(redis::RedisError),
    #[error("cannot set up TLS for Mantle: {0}")]
    Tls(rustls::Error),
}
