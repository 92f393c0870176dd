//! Builds the adapters from the standard AWS configuration chain (environment,
//! profile, web identity, IMDS …). `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>` are honoured by the SDK, which is how tests point
//! strata at the moto server.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::ProvideCredentials;

use crate::cost_tags::SdkCostTags;
use crate::cost_usage::SdkCostUsage;
use crate::iam::SdkIam;
use crate::mantle::HttpMantle;
use crate::sts::SdkIdentity;
use crate::tagging::SdkTagging;
use crate::{AwsCalls, CostAllocationTags, CostUsage, Iam, Identity, Mantle, Tagging};

pub const DEFAULT_MANTLE_URL: &str = "https://bedrock-mantle.{region}.api.aws/v1";

/// IAM and Cost Explorer are global services served from us-east-1.
const GLOBAL_REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Mantle's base URL with `{region}` in it.
    pub mantle_url: String,
}

/// Every external AWS system strata talks to, behind its trait.
#[derive(Clone)]
pub struct AwsClients {
    pub iam: Arc<dyn Iam>,
    pub mantle: Arc<dyn Mantle>,
    pub cost_tags: Arc<dyn CostAllocationTags>,
    pub cost_usage: Arc<dyn CostUsage>,
    pub tagging: Arc<dyn Tagging>,
    pub identity: Arc<dyn Identity>,
    pub calls: AwsCalls,
    /// `None` when credentials were found; otherwise why not (the embedded default
    /// on a laptop), so the reconciler can say so instead of failing every call.
    pub unavailable: Option<String>,
}

impl std::fmt::Debug for AwsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClients")
            .field("unavailable", &self.unavailable)
            .finish_non_exhaustive()
    }
}

impl AwsClients {
    pub async fn from_env(settings: &AwsSettings, calls: AwsCalls) -> Self {
        let config = sdk_config_from_env().await;
        let unavailable = probe_credentials(&config).await;
        Self::from_sdk_config(&config, settings, calls, unavailable)
    }

    /// Builds the adapters from an SDK configuration (tests point it at moto).
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        settings: &AwsSettings,
        calls: AwsCalls,
        unavailable: Option<String>,
    ) -> Self {
        let credentials = config.credentials_provider();
        let global = aws_config::Region::new(GLOBAL_REGION);
        let iam = aws_sdk_iam::config::Builder::from(config)
            .region(global.clone())
            .build();
        let ce = aws_sdk_costexplorer::Client::from_conf(
            aws_sdk_costexplorer::config::Builder::from(config)
                .region(global)
                .build(),
        );
        Self {
            iam: Arc::new(SdkIam {
                client: aws_sdk_iam::Client::from_conf(iam),
                calls: calls.clone(),
            }),
            mantle: Arc::new(HttpMantle {
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap_or_default(),
                url_template: settings.mantle_url.clone(),
                credentials,
                calls: calls.clone(),
            }),
            cost_tags: Arc::new(SdkCostTags {
                client: ce.clone(),
                calls: calls.clone(),
            }),
            cost_usage: Arc::new(SdkCostUsage {
                client: ce,
                calls: calls.clone(),
            }),
            tagging: Arc::new(SdkTagging {
                client: aws_sdk_resourcegroupstagging::Client::new(config),
                calls: calls.clone(),
            }),
            identity: Arc::new(SdkIdentity {
                client: aws_sdk_sts::Client::new(config),
                calls: calls.clone(),
                account: tokio::sync::OnceCell::new(),
            }),
            calls,
            unavailable,
        }
    }

    /// Replaces the Cost Explorer adapter (tests: moto lacks these operations).
    pub fn with_cost_tags(mut self, cost_tags: Arc<dyn CostAllocationTags>) -> Self {
        self.cost_tags = cost_tags;
        self
    }
}

/// The SDK configuration from the standard chain, with strata's timeouts.
pub async fn sdk_config_from_env() -> aws_config::SdkConfig {
    let region = RegionProviderChain::default_provider().or_else(GLOBAL_REGION);
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(timeouts)
        .load()
        .await
}

/// `None` when the chain yields credentials; otherwise why not.
pub async fn probe_credentials(config: &aws_config::SdkConfig) -> Option<String> {
    let provider = config.credentials_provider()?;
    match tokio::time::timeout(Duration::from_secs(5), provider.provide_credentials()).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("no AWS credentials found: {e}")),
        Err(_) => Some("no AWS credentials found within 5 s".to_owned()),
    }
}
