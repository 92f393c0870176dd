//! Closed sets of values. Each serializes as the lowercase string stored in the
//! database and accepted by the API; an unknown value is rejected with the list of
//! valid ones.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// The enums are written out (not generated) so that serde's renames reach the
// OpenAPI schema; the macro adds the string conversions.
macro_rules! string_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a stored or user-given value; the error lists the valid values.
            pub fn parse(value: &str) -> Result<Self, String> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "'{}' is not one of: {}",
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The environment a project runs in; each has its own AWS resources and dashboards.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Environment {
    #[serde(rename = "dev")]
    Dev,
    #[serde(rename = "staging")]
    Staging,
    #[serde(rename = "prod")]
    Prod,
}

string_enum!(Environment { Dev => "dev", Staging => "staging", Prod => "prod" });

/// The AWS regions that serve Bedrock's OpenAI-compatible endpoint (Mantle), GovCloud
/// (US-West) included.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Region {
    #[serde(rename = "us-east-1")]
    UsEast1,
    #[serde(rename = "us-east-2")]
    UsEast2,
    #[serde(rename = "us-west-2")]
    UsWest2,
    #[serde(rename = "ap-northeast-1")]
    ApNortheast1,
    #[serde(rename = "ap-south-1")]
    ApSouth1,
    #[serde(rename = "ap-southeast-2")]
    ApSoutheast2,
    #[serde(rename = "ap-southeast-3")]
    ApSoutheast3,
    #[serde(rename = "eu-central-1")]
    EuCentral1,
    #[serde(rename = "eu-west-1")]
    EuWest1,
    #[serde(rename = "eu-west-2")]
    EuWest2,
    #[serde(rename = "eu-south-1")]
    EuSouth1,
    #[serde(rename = "eu-north-1")]
    EuNorth1,
    #[serde(rename = "sa-east-1")]
    SaEast1,
    #[serde(rename = "us-gov-west-1")]
    UsGovWest1,
}

string_enum!(Region { UsEast1 => "us-east-1", UsEast2 => "us-east-2", UsWest2 => "us-west-2", ApNortheast1 => "ap-northeast-1", ApSouth1 => "ap-south-1", ApSoutheast2 => "ap-southeast-2", ApSoutheast3 => "ap-southeast-3", EuCentral1 => "eu-central-1", EuWest1 => "eu-west-1", EuWest2 => "eu-west-2", EuSouth1 => "eu-south-1", EuNorth1 => "eu-north-1", SaEast1 => "sa-east-1", UsGovWest1 => "us-gov-west-1" });

impl Region {
    /// The AWS partition the region belongs to: the first field of every ARN in it.
    pub fn partition(self) -> &'static str {
        match self {
            Region::UsGovWest1 => "aws-us-gov",
            _ => "aws",
        }
    }
}

/// A project's data retention, set on its Mantle project (`data_retention.mode`) and
/// enforced by Mantle and the proxy. `zdr` (Mantle's `none`): nothing is kept; the
/// Responses API only with `store=false` and without `background`. `standard`
/// (Mantle's `default`): each model's own retention. `aws_review`,
/// `provider_data_share`: Mantle's modes of those names, which some models require.
/// `inherit`: the account's setting in the region (or the model's default).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum DataRetention {
    #[serde(rename = "zdr")]
    Zdr,
    #[serde(rename = "standard")]
    Standard,
    #[serde(rename = "aws_review")]
    AwsReview,
    #[serde(rename = "provider_data_share")]
    ProviderDataShare,
    #[serde(rename = "inherit")]
    Inherit,
}

string_enum!(DataRetention { Zdr => "zdr", Standard => "standard", AwsReview => "aws_review", ProviderDataShare => "provider_data_share", Inherit => "inherit" });

impl DataRetention {
    /// The Mantle project's `data_retention.mode` for this setting.
    pub fn mantle_mode(self) -> RetentionMode {
        match self {
            DataRetention::Zdr => RetentionMode::None,
            DataRetention::Standard => RetentionMode::Default,
            DataRetention::AwsReview => RetentionMode::AwsReview,
            DataRetention::ProviderDataShare => RetentionMode::ProviderDataShare,
            DataRetention::Inherit => RetentionMode::Inherit,
        }
    }
}

/// Mantle's data-retention modes, as AWS names them (`ProjectDataRetention.mode`). A
/// model's catalog entry lists the modes it may be called under; `inherit` is a
/// project's or account's setting, never a model's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum RetentionMode {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "none")]
    None,
    #[serde(rename = "aws_review")]
    AwsReview,
    #[serde(rename = "provider_data_share")]
    ProviderDataShare,
    #[serde(rename = "inherit")]
    Inherit,
}

string_enum!(RetentionMode { Default => "default", None => "none", AwsReview => "aws_review", ProviderDataShare => "provider_data_share", Inherit => "inherit" });

impl RetentionMode {
    /// The modes a model may list: every mode but `inherit`.
    pub const FOR_MODELS: &'static [RetentionMode] = &[
        RetentionMode::Default,
        RetentionMode::None,
        RetentionMode::AwsReview,
        RetentionMode::ProviderDataShare,
    ];
}

/// The path prefix under which Mantle serves a model: most under `/v1`, some (OpenAI's
/// frontier models) only under `/openai/v1`, Claude only under `/anthropic/v1` (the
/// Messages API); a request on the wrong prefix is refused ("model … isn't supported
/// on this route").
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub enum MantlePath {
    #[default]
    #[serde(rename = "/v1")]
    V1,
    #[serde(rename = "/openai/v1")]
    OpenAiV1,
    #[serde(rename = "/anthropic/v1")]
    AnthropicV1,
}

string_enum!(MantlePath { V1 => "/v1", OpenAiV1 => "/openai/v1", AnthropicV1 => "/anthropic/v1" });

/// The Bedrock service tier a request was served in (AWS's `ServiceTier`: `priority`,
/// `default`, `flex`, `reserved`), as Mantle reports it; billed at different rates.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub enum ServiceTier {
    #[default]
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "priority")]
    Priority,
    #[serde(rename = "flex")]
    Flex,
    #[serde(rename = "reserved")]
    Reserved,
}

string_enum!(ServiceTier { Default => "default", Priority => "priority", Flex => "flex", Reserved => "reserved" });

impl ServiceTier {
    /// The tier an answer reports: AWS's names, and the names the OpenAI (`auto`,
    /// `default`) and Anthropic (`standard`) APIs use for the standard tier; anything
    /// else is taken as the standard tier.
    pub fn reported(name: &str) -> Self {
        Self::parse(name).unwrap_or_default()
    }
}

/// A member's role within one project. `owner` may manage the project's members.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum ProjectRole {
    #[serde(rename = "owner")]
    Owner,
    #[serde(rename = "developer")]
    Developer,
    #[serde(rename = "viewer")]
    Viewer,
}

string_enum!(ProjectRole { Owner => "owner", Developer => "developer", Viewer => "viewer" });

/// Lifecycle of a project. Archived projects are read-only and their AWS resources
/// are removed by the reconciler.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum ProjectStatus {
    #[serde(rename = "active")]
    Active,
    #[serde(rename = "archived")]
    Archived,
}

string_enum!(ProjectStatus { Active => "active", Archived => "archived" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mantle_region_round_trips() {
        assert_eq!(Region::ALL.len(), 14);
        for r in Region::ALL {
            assert_eq!(Region::parse(r.as_str()), Ok(*r));
        }
        let err = Region::parse("us-west-1").err().unwrap_or_default();
        assert!(
            err.contains("us-east-1") && err.contains("sa-east-1"),
            "{err}"
        );
    }

    #[test]
    fn each_data_retention_maps_to_its_mantle_mode() {
        let modes: Vec<&str> = DataRetention::ALL
            .iter()
            .map(|d| d.mantle_mode().as_str())
            .collect();
        assert_eq!(
            modes,
            [
                "none",
                "default",
                "aws_review",
                "provider_data_share",
                "inherit"
            ]
        );
    }

    #[test]
    fn govcloud_has_its_own_partition() {
        assert_eq!(Region::UsGovWest1.partition(), "aws-us-gov");
        assert_eq!(Region::ApSoutheast2.partition(), "aws");
        assert_eq!(Region::UsEast1.partition(), "aws");
    }
}

/// How a destination is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DestinationKind {
    /// A JSON POST signed with HMAC-SHA256 (`Strata-Signature`).
    #[serde(rename = "webhook")]
    Webhook,
    /// A Slack incoming webhook (`{"text": …}`).
    #[serde(rename = "slack")]
    Slack,
    /// E-mail through `STRATA_SMTP_URL`; the URL is `mailto:a@example.com,b@example.com`.
    #[serde(rename = "email")]
    Email,
}

string_enum!(DestinationKind { Webhook => "webhook", Slack => "slack", Email => "email" });

/// What a budget watches the spend of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum BudgetScope {
    /// One project (`target`: its id).
    #[serde(rename = "project")]
    Project,
    /// Every project of a team (`target`: the team slug).
    #[serde(rename = "team")]
    Team,
    /// Every project of an environment (`target`: `dev`, `staging` or `prod`).
    #[serde(rename = "environment")]
    Environment,
    /// Every project carrying a cost tag (`target`: `Key=Value`).
    #[serde(rename = "tag")]
    Tag,
    /// One API key (`target`: its id).
    #[serde(rename = "key")]
    Key,
}

string_enum!(BudgetScope { Project => "project", Team => "team", Environment => "environment", Tag => "tag", Key => "key" });

/// The period a budget's spend is added up over (UTC; weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum BudgetPeriod {
    #[serde(rename = "day")]
    Day,
    #[serde(rename = "week")]
    Week,
    #[serde(rename = "month")]
    Month,
}

string_enum!(BudgetPeriod { Day => "day", Week => "week", Month => "month" });

/// What happens when a budget is used up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum BudgetEnforcement {
    /// Alerts only: the destinations hear of 50, 80 and 100 %.
    #[default]
    #[serde(rename = "soft")]
    Soft,
    /// Alerts, and the proxy refuses a request that could take the period's spend past
    /// the amount (429 `insufficient_quota`).
    #[serde(rename = "hard")]
    Hard,
}

string_enum!(BudgetEnforcement { Soft => "soft", Hard => "hard" });
