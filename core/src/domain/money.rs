//! Money kept as integers: budgets in cents, prices in micro-dollars per million
//! tokens. JSON carries them as decimal numbers of US dollars.

use serde::{Serialize, Serializer};

const MAX_BUDGET_USD: f64 = 1e9;
const MAX_PRICE_USD_PER_MTOK: f64 = 10_000.0;

/// A monthly budget in whole cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Budget(i64);

impl Budget {
    /// Accepts dollars with at most two decimals, 0 ≤ x ≤ 1e9.
    pub fn from_usd(usd: f64) -> Result<Self, String> {
        if !usd.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&usd) {
            return Err(format!("must be between 0 and {MAX_BUDGET_USD} US dollars"));
        }
        let cents = (usd * 100.0).round();
        if (usd * 100.0 - cents).abs() > 1e-6 {
            return Err("must have at most two decimal places (whole cents)".into());
        }
        Ok(Self(cents as i64))
    }

    pub fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn usd(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl Serialize for Budget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.usd())
    }
}

/// A price in micro-dollars per million tokens ($0.15 / M tokens = 150_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(i64);

impl Price {
    /// Accepts dollars per million tokens with at most six decimals.
    pub fn from_usd_per_mtok(usd: f64) -> Result<Self, String> {
        if !usd.is_finite() || !(0.0..=MAX_PRICE_USD_PER_MTOK).contains(&usd) {
            return Err(format!(
                "must be between 0 and {MAX_PRICE_USD_PER_MTOK} US dollars per million tokens"
            ));
        }
        let micros = (usd * 1e6).round();
        if (usd * 1e6 - micros).abs() > 1e-3 {
            return Err("must have at most six decimal places".into());
        }
        Ok(Self(micros as i64))
    }

    pub fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn usd_per_mtok(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.usd_per_mtok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        assert_eq!(Budget::from_usd(1234.56).map(Budget::cents), Ok(123_456));
        assert_eq!(Budget::from_usd(0.0).map(Budget::cents), Ok(0));
        assert!(Budget::from_usd(0.001).is_err());
        assert!(Budget::from_usd(-1.0).is_err());
        assert!(Budget::from_usd(f64::NAN).is_err());
        assert!(Budget::from_usd(2e9).is_err());
    }

    #[test]
    fn prices() {
        assert_eq!(
            Price::from_usd_per_mtok(0.15).map(Price::micros),
            Ok(150_000)
        );
        assert_eq!(
            Price::from_usd_per_mtok(0.0375).map(Price::micros),
            Ok(37_500)
        );
        assert!(Price::from_usd_per_mtok(0.0000001).is_err());
        assert_eq!(Price::from_micros(600_000).usd_per_mtok(), 0.6);
    }
}
