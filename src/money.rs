//! Exact money: integer minor units (paise), parsed from decimal text.
//!
//! Amounts never pass through `f64`. Jodo sends `payment.amount` as a JSON number
//! and `details[].amount` as a string; both are read from their text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest amount accepted, in minor units. Far above any school fee, and far
/// below `i64::MAX` so sums over a whole ledger cannot overflow.
pub const MAX_MINOR: i64 = 100_000_000_000_000; // one trillion rupees

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
    pub const ZERO: Money = Money(0);

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

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

impl fmt::Display for Money {
    /// Two decimal places, always: `2000.50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
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
    fn displays_two_places() {
        assert_eq!(Money::parse("2000.5").unwrap().to_string(), "2000.50");
        assert_eq!(Money::parse("3").unwrap().to_string(), "3.00");
    }
}
