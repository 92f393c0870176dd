//! Daily cost by tag from Cost Explorer's `GetCostAndUsage`, one page per call: every
//! page is a billed request ($0.01), so the caller decides, page by page, whether the
//! day's call budget allows the next one.

use async_trait::async_trait;
use aws_sdk_costexplorer::Client;
use aws_sdk_costexplorer::types::{
    DateInterval, Dimension, DimensionValues, Expression, Granularity, GroupDefinition,
    GroupDefinitionType, Metric, TagValues,
};
use chrono::NaiveDate;

use crate::error::AwsError;
use crate::{
    AwsCalls, CostForecast, CostPage, CostQuery, CostRow, CostUsage, ErrorKind, ForecastQuery,
    SkippedRow,
};

const SERVICE: &str = "ce";
const OPERATION: &str = "GetCostAndUsage";
const FORECAST: &str = "GetCostForecast";

pub(crate) struct SdkCostUsage {
    pub(crate) client: Client,
    pub(crate) calls: AwsCalls,
}

#[async_trait]
impl CostUsage for SdkCostUsage {
    async fn page(&self, query: &CostQuery, token: Option<&str>) -> Result<CostPage, AwsError> {
        let invalid =
            |message: String| AwsError::new(SERVICE, OPERATION, ErrorKind::Invalid, None, message);
        let period = DateInterval::builder()
            .start(query.start.format("%Y-%m-%d").to_string())
            .end(query.end.format("%Y-%m-%d").to_string())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let mut request = self
            .client
            .get_cost_and_usage()
            .time_period(period)
            .granularity(Granularity::Daily)
            .metrics(&query.metric)
            .set_next_page_token(token.map(str::to_owned));
        for key in &query.group_by {
            request = request.group_by(
                GroupDefinition::builder()
                    .r#type(GroupDefinitionType::Tag)
                    .key(key)
                    .build(),
            );
        }
        if !query.services.is_empty() {
            request = request.filter(services_filter(&query.services));
        }
        let call = async {
            request
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(SERVICE, OPERATION, e))
        };
        let out = self.calls.track(SERVICE, OPERATION, call).await?;
        let mut rows = Vec::new();
        let mut skipped = Vec::new();
        for period in out.results_by_time() {
            let start = period.time_period().map(|p| p.start()).unwrap_or_default();
            let skip = |group: &[String], field: &str, message: String| SkippedRow {
                operation: OPERATION.into(),
                period: start.to_owned(),
                group: group.to_vec(),
                field: field.into(),
                message,
            };
            let Ok(day) = NaiveDate::parse_from_str(start, "%Y-%m-%d") else {
                let message = format!("not a day: {start:?}");
                skipped.extend(
                    period
                        .groups()
                        .iter()
                        .map(|g| skip(g.keys(), "TimePeriod.Start", message.clone())),
                );
                if period.groups().is_empty() {
                    skipped.push(skip(&[], "TimePeriod.Start", message));
                }
                continue;
            };
            for group in period.groups() {
                let Some(metric) = group.metrics().and_then(|m| m.get(&query.metric)) else {
                    continue;
                };
                let amount = metric.amount().unwrap_or("0");
                let Some(amount_micros) = micros(amount) else {
                    skipped.push(skip(
                        group.keys(),
                        &format!("Metrics.{}.Amount", query.metric),
                        format!("not a number: {amount:?}"),
                    ));
                    continue;
                };
                rows.push(CostRow {
                    day,
                    tags: group.keys().iter().map(|k| tag_pair(k)).collect(),
                    amount_micros,
                    unit: metric.unit().unwrap_or("USD").to_owned(),
                    estimated: period.estimated(),
                });
            }
        }
        Ok(CostPage {
            rows,
            skipped,
            next_token: out
                .next_page_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        })
    }

    async fn forecast(&self, query: &ForecastQuery) -> Result<CostForecast, AwsError> {
        let invalid =
            |message: String| AwsError::new(SERVICE, FORECAST, ErrorKind::Invalid, None, message);
        let period = DateInterval::builder()
            .start(query.start.format("%Y-%m-%d").to_string())
            .end(query.end.format("%Y-%m-%d").to_string())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let environment = Expression::builder()
            .tags(
                TagValues::builder()
                    .key(&query.tag.0)
                    .values(&query.tag.1)
                    .build(),
            )
            .build();
        let filter = if query.services.is_empty() {
            environment
        } else {
            Expression::builder()
                .and(services_filter(&query.services))
                .and(environment)
                .build()
        };
        let request = self
            .client
            .get_cost_forecast()
            .time_period(period)
            .granularity(Granularity::Monthly)
            .metric(forecast_metric(&query.metric))
            .filter(filter);
        let call = async {
            request
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(SERVICE, FORECAST, e))
        };
        let out = self.calls.track(SERVICE, FORECAST, call).await?;
        let total = out
            .total()
            .ok_or_else(|| invalid("a forecast without a Total".into()))?;
        let amount = total.amount().unwrap_or("0");
        let amount_micros = micros(amount)
            .ok_or_else(|| invalid(format!("an amount that is not a number: {amount:?}")))?;
        Ok(CostForecast {
            amount_micros,
            unit: total.unit().unwrap_or("USD").to_owned(),
        })
    }
}

/// Only the given services (`SERVICE` dimension).
fn services_filter(services: &[String]) -> Expression {
    Expression::builder()
        .dimensions(
            DimensionValues::builder()
                .key(Dimension::Service)
                .set_values(Some(services.to_vec()))
                .build(),
        )
        .build()
}

/// `GetCostAndUsage` names metrics `UnblendedCost`; `GetCostForecast` wants
/// `UNBLENDED_COST`.
fn forecast_metric(metric: &str) -> Metric {
    let mut upper = String::with_capacity(metric.len() + 4);
    for (i, c) in metric.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            upper.push('_');
        }
        upper.push(c.to_ascii_uppercase());
    }
    Metric::from(upper.as_str())
}

/// `CostCenter$eng` → (`CostCenter`, `eng`); `CostCenter$` (no such tag) → (`CostCenter`,
/// ``). Tag keys cannot contain `$`, so the first one separates.
pub fn tag_pair(group_key: &str) -> (String, String) {
    match group_key.split_once('$') {
        Some((key, value)) => (key.to_owned(), value.to_owned()),
        None => (group_key.to_owned(), String::new()),
    }
}

/// A decimal amount ("12.3456789", "-0.5", "1E-7") in millionths, rounded half away
/// from zero. Exact for plain decimals; `None` for anything that is not a number.
pub fn micros(amount: &str) -> Option<i64> {
    let text = amount.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !whole.is_empty() || !fraction.is_empty();
    if plain
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
    {
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut millionths: i64 = 0;
        for (i, b) in fraction
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(7)
            .enumerate()
        {
            let d = i64::from(b - b'0');
            if i < 6 {
                millionths = millionths * 10 + d;
            } else if d >= 5 {
                millionths += 1;
            }
        }
        let value = whole.checked_mul(1_000_000)?.checked_add(millionths)?;
        return Some(if negative { -value } else { value });
    }
    // Exponent notation: rare, and a float is precise enough at this scale.
    let value: f64 = text.parse().ok()?;
    let scaled = (value * 1_000_000.0).round();
    (scaled.is_finite() && scaled.abs() < 9.0e18).then_some(scaled as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_millionths_exactly() {
        for (text, expected) in [
            ("12.3456789", Some(12_345_679)),
            ("0.0000004", Some(0)),
            ("0.0000005", Some(1)),
            ("-0.5", Some(-500_000)),
            ("7", Some(7_000_000)),
            (".25", Some(250_000)),
            ("1E-6", Some(1)),
            ("2.5e2", Some(250_000_000)),
            ("", None),
            ("-", None),
            ("abc", None),
            ("1.2.3", None),
        ] {
            assert_eq!(micros(text), expected, "{text:?}");
        }
    }

    #[test]
    fn forecast_metrics_are_upper_snake_case() {
        assert_eq!(forecast_metric("UnblendedCost"), Metric::UnblendedCost);
        assert_eq!(forecast_metric("AmortizedCost"), Metric::AmortizedCost);
        assert_eq!(
            forecast_metric("NetUnblendedCost"),
            Metric::NetUnblendedCost
        );
    }

    #[test]
    fn group_keys_split_into_tag_and_value_untagged_is_empty() {
        assert_eq!(
            tag_pair("CostCenter$eng"),
            ("CostCenter".into(), "eng".into())
        );
        assert_eq!(
            tag_pair("strata:project$"),
            ("strata:project".into(), String::new())
        );
        assert_eq!(tag_pair("Team$a$b"), ("Team".into(), "a$b".into()));
    }
}
