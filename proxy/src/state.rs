//! The proxy's shared state: the key verifier, the followed policy snapshot, limits,
//! metering, metrics, the registry of Responses ids, the Mantle client and its
//! authentication. Every handler gets it as [`ProxyState`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use strata_aws::UpstreamAuth;

use crate::config::ProxySettings;
use crate::control::StartError;
use crate::error::OpenAiError;
use crate::forward::UpstreamUrls;
use crate::limits::{LimitStore, Limiter, LocalStore, RedisStore, SpendBaselines};
use crate::limits::{Prices, Reservation};
use crate::metering::Meter;
use crate::metrics::ProxyMetrics;
use crate::registry::{ResponseRegistry, SharedOwners};
use crate::upstream::UpstreamClient;
use crate::{KeyVerifier, Policy, SnapshotFollower};

pub struct Proxy {
    pub verifier: KeyVerifier,
    pub limiter: Arc<Limiter>,
    /// The control plane's record of Responses API ids.
    pub responses: ResponseRegistry,
    /// This replica's name when it claims background responses to follow.
    pub instance: String,
    /// Background responses this replica created and holds reservations for.
    pub(crate) pending: std::sync::Mutex<HashMap<String, Pending>>,
    pub follower: Arc<SnapshotFollower>,
    pub meter: Arc<Meter>,
    pub metrics: ProxyMetrics,
    pub(crate) upstream_auth: Arc<dyn UpstreamAuth>,
    pub(crate) upstream: UpstreamClient,
    /// Parsed Mantle URLs by path and region.
    pub(crate) upstream_urls: RwLock<UpstreamUrls>,
    pub(crate) settings: ProxySettings,
}

pub type ProxyState = Arc<Proxy>;

/// A background response this replica created, until it is metered.
pub struct Pending {
    pub reservation: Option<Reservation>,
    pub prices: Prices,
    pub started: std::time::Instant,
}

impl Proxy {
    /// `control`: the client for the control plane; `upstream_auth`: how Mantle calls
    /// are authenticated (assumed project roles, or a Bedrock API key).
    pub fn new(
        settings: ProxySettings,
        control: reqwest::Client,
        upstream_auth: Arc<dyn UpstreamAuth>,
    ) -> Result<Self, StartError> {
        let upstream = UpstreamClient::new(
            crate::workers::default_workers(),
            Duration::from_secs(10),
            Duration::from_secs(settings.config.upstream_timeout_secs),
            Duration::from_secs(settings.config.upstream_idle_timeout_secs),
        )?;
        let config = &settings.config;
        let (store, shared_owners): (Arc<dyn LimitStore>, _) = match &config.redis_url {
            Some(url) => {
                let redis =
                    RedisStore::new(url.expose(), &config.redis_key_prefix, config.limit_slice)?;
                let owners = SharedOwners::new(redis.connection(), &config.redis_key_prefix);
                (Arc::new(redis), Some(owners))
            }
            None => (Arc::new(LocalStore::new()), None),
        };
        let limiter = Arc::new(Limiter::new(
            store,
            SpendBaselines::new(
                control.clone(),
                &settings.control_plane_url,
                settings.credential.clone(),
            ),
            config.limits_on_store_error,
        ));
        let responses = ResponseRegistry::new(
            control.clone(),
            &settings.control_plane_url,
            settings.credential.clone(),
            shared_owners,
        );
        let metrics = ProxyMetrics::new();
        let (errors, dropped, unsent, held) = (
            limiter.errors.clone(),
            responses.dropped.clone(),
            responses.unsent.clone(),
            responses.held.clone(),
        );
        metrics.register(|r| {
            r.register(
                "limits_store_errors",
                "Reservations or settlements the limits store (Redis) failed",
                errors,
            );
            r.register(
                "response_records_dropped",
                "Responses' owners given up after the control plane refused them for too long",
                dropped,
            );
            r.register(
                "response_records_unsent",
                "Responses' owners queued for the control plane and not yet taken by it",
                unsent,
            );
            r.register(
                "response_creates_held",
                "Creates held back until the control plane caught up with the responses' owners",
                held,
            );
        });
        Ok(Self {
            limiter,
            responses,
            instance: strata_contract::lease_owner(),
            pending: std::sync::Mutex::new(HashMap::new()),
            verifier: KeyVerifier::new(
                control.clone(),
                &settings.control_plane_url,
                &settings.key_issuer,
                &settings.audience,
            ),
            follower: Arc::new(SnapshotFollower::new(
                control.clone(),
                &settings.control_plane_url,
                settings.credential.clone(),
                Duration::from_secs(settings.config.max_staleness_secs),
            )),
            meter: Arc::new(Meter::new(
                control,
                &settings.control_plane_url,
                settings.credential.clone(),
            )),
            metrics,
            upstream_auth,
            upstream,
            upstream_urls: RwLock::new(foldhash::HashMap::default()),
            settings,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn pending_background(&self, id: &str, pending: Pending) {
        self.pending().insert(id.to_owned(), pending);
    }

    pub(crate) fn take_pending(&self, id: &str) -> Option<Pending> {
        self.pending().remove(id)
    }

    pub(crate) fn restore_pending(&self, id: &str, pending: Pending) {
        self.pending().insert(id.to_owned(), pending);
    }

    pub(crate) fn drain_pending(&self) -> Vec<(String, Pending)> {
        self.pending().drain().collect()
    }

    pub(crate) fn policy(&self) -> Result<Arc<Policy>, OpenAiError> {
        self.follower.current().ok_or_else(|| {
            OpenAiError::unavailable(
                "policy_unavailable",
                "The proxy has no current policy from the control plane; retry shortly.",
            )
        })
    }
}
