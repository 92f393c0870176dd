use clap::Args;
use strata_aws::DEFAULT_MANTLE_URL;
use strata_core::config::clean_list;

/// Settings of the reconciler (`strata serve`, `strata reconcile`).
#[derive(Clone, Debug, Args)]
pub struct ReconcilerConfig {
    /// Run the reconcile loop in `strata serve` (turn off for API-only replicas).
    #[arg(long = "reconciler", env = "STRATA_RECONCILER", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Seconds between passes over a project that is in sync (catches drift made
    /// outside strata).
    #[arg(
        long = "resync-interval",
        env = "STRATA_RESYNC_INTERVAL",
        default_value_t = 600
    )]
    pub resync_secs: u64,
    /// Milliseconds between looks for due work; a change through the API is picked
    /// up within this time.
    #[arg(
        long = "reconcile-poll-interval",
        env = "STRATA_RECONCILE_POLL_MS",
        default_value_t = 500
    )]
    pub poll_ms: u64,
    /// Projects reconciled at once by this process.
    #[arg(
        long = "reconcile-concurrency",
        env = "STRATA_RECONCILE_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,
    /// Seconds a claimed project stays claimed if its replica dies.
    #[arg(
        long = "reconcile-lease",
        env = "STRATA_RECONCILE_LEASE_SECS",
        default_value_t = 60
    )]
    pub lease_secs: u64,
    /// Longest wait after repeated failures, in seconds.
    #[arg(
        long = "reconcile-max-backoff",
        env = "STRATA_RECONCILE_MAX_BACKOFF_SECS",
        default_value_t = 300
    )]
    pub max_backoff_secs: u64,
    /// Principals (role ARNs) trusted to assume project roles, comma-separated:
    /// the proxy's role, workload roles. Empty: the account's root, which leaves
    /// the decision to IAM policies in the account.
    #[arg(
        long = "trusted-principals",
        env = "STRATA_TRUSTED_PRINCIPALS",
        value_delimiter = ','
    )]
    pub trusted_principals: Vec<String>,
    /// An IAM OIDC provider (ARN) whose workloads may assume project roles with web
    /// identity, e.g. an EKS cluster's.
    #[arg(long = "trusted-oidc-provider", env = "STRATA_TRUSTED_OIDC_PROVIDER")]
    pub trusted_oidc_provider: Option<String>,
    /// The `sub` those workloads must present; `{environment}` and `{project}` are
    /// the project's, so each role trusts only its own project's service account.
    #[arg(
        long = "trusted-oidc-subject",
        env = "STRATA_TRUSTED_OIDC_SUBJECT",
        default_value = "system:serviceaccount:{environment}:{project}"
    )]
    pub trusted_oidc_subject: String,
    /// Tag keys to activate as cost-allocation tags in Cost Explorer,
    /// comma-separated. Empty turns activation off.
    #[arg(
        long = "cost-allocation-tags",
        env = "STRATA_COST_ALLOCATION_TAGS",
        value_delimiter = ',',
        default_value = "strata:project,strata:environment"
    )]
    pub cost_allocation_tags: Vec<String>,
    /// Mantle's base URL; `{region}` is replaced by the project's region.
    #[arg(long = "mantle-url", env = "STRATA_MANTLE_URL", default_value = DEFAULT_MANTLE_URL)]
    pub mantle_url: String,
}

impl ReconcilerConfig {
    /// Trims list entries and drops empty ones (`STRATA_COST_ALLOCATION_TAGS=""`
    /// reaches clap as one empty entry), and an empty OIDC provider, once, so the
    /// rest of the reconciler takes the settings as they are.
    pub fn normalized(mut self) -> Self {
        self.trusted_principals = clean_list(&self.trusted_principals);
        self.cost_allocation_tags = clean_list(&self.cost_allocation_tags);
        self.trusted_oidc_provider = self
            .trusted_oidc_provider
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        self
    }
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            resync_secs: 600,
            poll_ms: 500,
            concurrency: 4,
            lease_secs: 60,
            max_backoff_secs: 300,
            trusted_principals: Vec::new(),
            trusted_oidc_provider: None,
            trusted_oidc_subject: "system:serviceaccount:{environment}:{project}".into(),
            cost_allocation_tags: vec!["strata:project".into(), "strata:environment".into()],
            mantle_url: DEFAULT_MANTLE_URL.into(),
        }
    }
}
