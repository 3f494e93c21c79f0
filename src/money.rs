//! Exact money: integer minor units (paise), parsed from decimal text.
//!
//! Amounts never pass through `f64`. Jodo sends `payment.amount` as a JSON number
//! and `details[].amount` as a string; both are read from their text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest amount accepted, in minor units: 1,000,000,000,000.00 (one
/// trillion rupees). Far above any school fee; a larger amount is a 400. It
/// keeps one amount well inside `i64`, but not a sum of many: sums are
/// [`Total`]s.
pub const MAX_MINOR: i64 = 100_000_000_000_000;

/// An amount of money in minor units (1/100 of the major unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("is empty")]
    Empty,
    #[error("is negative")]
    Negative,
    #[error("has more than two decimal places")]
    TooPrecise,
    #[error("is not a plain decimal number")]
    NotDecimal,
    #[error("is too large")]
    TooLarge,
}

impl Money {
    pub fn from_minor(minor: i64) -> Money {
        assert!((0..=MAX_MINOR).contains(&minor), "money out of range");
        Money(minor)
    }

    pub fn minor(self) -> i64 {
        self.0
    }

    /// Parses a non-negative decimal with at most two places: `2000`, `2000.0`,
    /// `1499.5`, `1000.50`. Exponents, signs other than a rejected `-`, and
    /// more than two decimals are errors.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        if text.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::NotDecimal);
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || (text.contains('.') && frac.is_empty()) {
            return Err(MoneyError::NotDecimal);
        }
        if frac.len() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        // 13 digits of rupees is already beyond MAX_MINOR; refuse before parsing.
        let whole = whole.trim_start_matches('0');
        if whole.len() > 13 {
            return Err(MoneyError::TooLarge);
        }
        let major: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::NotDecimal)?
        };
        let mut cents: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            let digit = i64::from(b - b'0');
            cents += if i == 0 { digit * 10 } else { digit };
        }
        let minor = major
            .checked_mul(100)
            .and_then(|m| m.checked_add(cents))
            .ok_or(MoneyError::TooLarge)?;
        if minor > MAX_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money(minor))
    }
}

impl fmt::Display for Money {
    /// Two decimal places, always: `2000.50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A sum of amounts, in minor units. `i128`: a sum of `i64` amounts cannot
/// overflow it before 2^64 of them, so adding is never a panic nor a wrap
/// (92,234 amounts of [`MAX_MINOR`] already overflow `i64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Total(i128);

impl Total {
    pub const ZERO: Total = Total(0);

    /// A total given in minor units.
    pub fn from_minor(minor: i128) -> Total {
        Total(minor)
    }

    pub fn minor(self) -> i128 {
        self.0
    }

    /// Adds an amount (saturating: unreachable below 2^64 amounts).
    pub fn plus(self, m: Money) -> Total {
        Total(self.0.saturating_add(i128::from(m.0)))
    }
}

impl std::iter::Sum<Money> for Total {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Total {
        iter.fold(Total::ZERO, Total::plus)
    }
}

impl fmt::Display for Total {
    /// Two decimal places, always, like [`Money`]; a minus sign if negative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_jodo_sends() {
        assert_eq!(Money::parse("2000").unwrap().minor(), 200_000);
        assert_eq!(Money::parse("2000.0").unwrap().minor(), 200_000);
        assert_eq!(Money::parse("1499.5").unwrap().minor(), 149_950);
        assert_eq!(Money::parse("1000.50").unwrap().minor(), 100_050);
        assert_eq!(Money::parse("0.07").unwrap().minor(), 7);
    }

    #[test]
    fn rejects_what_is_not_exact_money() {
        assert_eq!(Money::parse("10.001"), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse("-5"), Err(MoneyError::Negative));
        assert_eq!(Money::parse("1e3"), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse("1."), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse(".5"), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse(""), Err(MoneyError::Empty));
        assert_eq!(
            Money::parse("99999999999999999999"),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn a_total_of_many_maximum_amounts_neither_panics_nor_wraps() {
        let max = Money::parse("1000000000000").unwrap();
        assert_eq!(max.minor(), MAX_MINOR);
        let total: Total = std::iter::repeat_n(max, 100_000).sum();
        assert_eq!(total.minor(), i128::from(MAX_MINOR) * 100_000);
        assert_eq!(total.to_string(), "100000000000000000.00");
        assert!(total.minor() > i128::from(i64::MAX));
        assert_eq!(Money::parse("1000000000000.01"), Err(MoneyError::TooLarge));
    }

    #[test]
    fn displays_two_places() {
        assert_eq!(Money::parse("2000.5").unwrap().to_string(), "2000.50");
        assert_eq!(Money::parse("3").unwrap().to_string(), "3.00");
    }
}
