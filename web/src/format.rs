//! How pages write amounts, shares and times: the same way everywhere.

use chrono::{DateTime, NaiveDate, Utc};

/// Millionths of a dollar as `$1,234.57` (`-$3.10` below zero); amounts under a
/// cent but not zero as `<$0.01`, so small spend never reads as nothing.
pub fn usd(micros: i64) -> String {
    let cents = (micros as i128 + if micros >= 0 { 5_000 } else { -5_000 }) / 10_000;
    if cents == 0 && micros > 0 {
        return "<$0.01".into();
    }
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let whole = u64::try_from(cents / 100).unwrap_or(u64::MAX);
    format!("{sign}${}.{:02}", count(whole), cents % 100)
}

/// A percentage with one decimal, e.g. `42.5 %`.
pub fn percent(value: f64) -> String {
    format!("{value:.1} %")
}

/// A change as `+12.0 %` / `-3.5 %`.
pub fn change(value: f64) -> String {
    format!("{value:+.1} %")
}

/// `2026-11-27 14:05 UTC`.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `Nov 27`.
pub fn short_day(day: NaiveDate) -> String {
    day.format("%b %-d").to_string()
}

/// A count with thousands separators.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_to_cents_with_separators() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(1), "<$0.01");
        assert_eq!(usd(4_999), "<$0.01");
        assert_eq!(usd(5_000), "$0.01");
        assert_eq!(usd(1_234_567_891), "$1,234.57");
        assert_eq!(usd(-3_100_000), "-$3.10");
        assert_eq!(usd(999_999_995_000), "$1,000,000.00");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
    }
}
