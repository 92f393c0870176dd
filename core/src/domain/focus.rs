//! Cost rows as a FinOps FOCUS 1.0 dataset (CSV): the 43 columns FOCUS 1.0 defines,
//! then strata's own (`x_` prefixed, as FOCUS allows) saying whether a row is Cost
//! Explorer's actual or the proxy's estimate.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use uuid::Uuid;

use super::{month_start, next_month_start};

/// FOCUS 1.0's columns, in the specification's (alphabetical) order.
pub const FOCUS_COLUMNS: [&str; 43] = [
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
];

/// strata's columns after FOCUS's.
pub const STRATA_COLUMNS: [&str; 4] = [
    "x_Source",
    "x_Estimated",
    "x_StrataProjectId",
    "x_Environment",
];

/// Where a row's amount comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FocusSource {
    /// Cost Explorer's daily cost by the project's tag.
    CostExplorer,
    /// The proxy's metering, for a day Cost Explorer has not reported.
    ProxyEstimate,
}

impl FocusSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CostExplorer => "aws-cost-explorer",
            Self::ProxyEstimate => "strata-proxy-estimate",
        }
    }
}

/// One project's cost on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct FocusRow {
    pub day: NaiveDate,
    pub environment: String,
    /// `None` for cost tagged with a project strata does not have.
    pub project_id: Option<Uuid>,
    /// The project's name, or the raw tag value.
    pub project_name: String,
    pub region: Option<String>,
    /// The AWS account of the project's role.
    pub account_id: Option<String>,
    /// The Mantle project's ARN, when it exists.
    pub resource_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub amount_micros: i64,
    pub currency: String,
    pub source: FocusSource,
    /// Cost Explorer may still restate it, or it is the proxy's estimate.
    pub estimated: bool,
}

fn timestamp(day: NaiveDate) -> String {
    format!("{day}T00:00:00Z")
}

/// The dataset as CSV: a header, then one row per project and day.
pub fn focus_csv(rows: &[FocusRow]) -> Result<Vec<u8>, String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(FOCUS_COLUMNS.iter().chain(STRATA_COLUMNS.iter()))
        .map_err(|e| e.to_string())?;
    for r in rows {
        let amount = format!("{:.6}", r.amount_micros as f64 / 1e6);
        let tags = serde_json::to_string(&r.tags).map_err(|e| e.to_string())?;
        let description = format!(
            "Amazon Bedrock (OpenAI-compatible endpoint) for {} in {}",
            r.project_name, r.environment
        );
        let project_id = r.project_id.map(|p| p.to_string()).unwrap_or_default();
        let region = r.region.clone().unwrap_or_default();
        let account = r.account_id.clone().unwrap_or_default();
        let resource = r.resource_arn.clone().unwrap_or_else(|| project_id.clone());
        let field = |name: &str| -> String {
            match name {
                "BilledCost" | "EffectiveCost" | "ListCost" | "ContractedCost" => amount.clone(),
                "BillingAccountId" | "SubAccountId" => account.clone(),
                "BillingCurrency" => r.currency.clone(),
                "BillingPeriodStart" => timestamp(month_start(r.day)),
                "BillingPeriodEnd" => timestamp(next_month_start(r.day)),
                "ChargeCategory" => "Usage".into(),
                "ChargeDescription" => description.clone(),
                "ChargeFrequency" => "Usage-Based".into(),
                "ChargePeriodStart" => timestamp(r.day),
                "ChargePeriodEnd" => timestamp(r.day + Duration::days(1)),
                "InvoiceIssuerName" | "ProviderName" | "PublisherName" => {
                    "Amazon Web Services".into()
                }
                "PricingCategory" => "Standard".into(),
                "RegionId" | "RegionName" => region.clone(),
                "ResourceId" => resource.clone(),
                "ResourceName" => r.project_name.clone(),
                "ResourceType" => "Mantle project".into(),
                "ServiceCategory" => "AI and Machine Learning".into(),
                "ServiceName" => "Amazon Bedrock".into(),
                "Tags" => tags.clone(),
                "x_Source" => r.source.as_str().into(),
                "x_Estimated" => r.estimated.to_string(),
                "x_StrataProjectId" => project_id.clone(),
                "x_Environment" => r.environment.clone(),
                // FOCUS columns strata has nothing for (commitments, SKUs, quantities)
                // are null, which FOCUS 1.0 allows for them.
                _ => String::new(),
            }
        };
        let record: Vec<String> = FOCUS_COLUMNS
            .iter()
            .chain(STRATA_COLUMNS.iter())
            .map(|c| {
                let value = field(c);
                // Names people chose could run as formulas in a spreadsheet; amounts
                // stay numbers.
                if matches!(*c, "ResourceName" | "ChargeDescription") {
                    super::costs::spreadsheet_safe(&value).into_owned()
                } else {
                    value
                }
            })
            .collect();
        out.write_record(&record).map_err(|e| e.to_string())?;
    }
    out.into_inner().map_err(|e| e.to_string())
}
