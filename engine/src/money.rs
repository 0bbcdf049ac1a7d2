//! Money arithmetic: validation against an asset's scale, bounded sums,
//! conversion at a rate. Every function is exact or refuses.
//!
//! The bound: every amount and every balance has at most 28 significant
//! digits (`MAX_UNITS`). The sum of two bounded values then still fits the
//! 96-bit mantissa of `Decimal`, so an addition can never be silently rounded
//! by `rust_decimal` (which drops scale instead of failing when a result does
//! not fit). Sums across many wallets are kept as `i128` minor units instead.

use crate::asset::Asset;
use crate::reject::Reject;
use rust_decimal::{Decimal, RoundingStrategy};

/// The largest amount or balance, in minor units: 28 nines.
pub const MAX_UNITS: i128 = 9_999_999_999_999_999_999_999_999_999;

/// The largest amount of an asset (`MAX_UNITS` minor units).
pub fn max_amount(scale: u32) -> Decimal {
    // Cannot fail for scale <= 28; MAX_SCALE is 18.
    Decimal::try_from_i128_with_scale(MAX_UNITS, scale).unwrap_or(Decimal::MAX)
}

/// Checks a client's amount against its asset: positive, no more decimal
/// places than the scale (trailing zeros are fine: "10.500" is 10.50), at
/// most `MAX_UNITS`. Returns it at exactly the asset's scale. Never rounds.
pub fn validate(asset: Asset, raw: Decimal) -> Result<Decimal, Reject> {
    if raw <= Decimal::ZERO {
        return Err(Reject::InvalidAmount(format!(
            "amount must be positive, got {raw}"
        )));
    }
    let normal = raw.normalize();
    if normal.scale() > asset.scale {
        return Err(Reject::InvalidAmount(format!(
            "{} allows {} decimal places, got {}",
            asset.code,
            asset.scale,
            normal.scale()
        )));
    }
    if normal > max_amount(asset.scale) {
        return Err(Reject::InvalidAmount(format!(
            "amount {normal} {} is out of range",
            asset.code
        )));
    }
    let mut exact = normal;
    exact.rescale(asset.scale);
    debug_assert_eq!(exact, raw);
    Ok(exact)
}

/// `a + b`, refused when the result would pass the bound.
pub fn add(asset: Asset, a: Decimal, b: Decimal) -> Result<Decimal, Reject> {
    // Amounts and balances are held at their asset's scale, so on the hot
    // path the sum is the sum of the minor units: an `i128` addition (each
    // mantissa is under 2^96: no overflow) and a bound on the units,
    // instead of `rust_decimal`'s general alignment and a decimal compare.
    // The same value, at the same scale, as the general path below.
    let sum = if a.scale() == asset.scale && b.scale() == asset.scale {
        let units = a.mantissa() + b.mantissa();
        (units <= MAX_UNITS)
            .then(|| Decimal::try_from_i128_with_scale(units, asset.scale).ok())
            .flatten()
    } else {
        a.checked_add(b)
            .filter(|sum| *sum <= max_amount(asset.scale))
    };
    sum.ok_or_else(|| {
        Reject::InvalidAmount(format!(
            "the {} balance would exceed its limit of {}",
            asset.code,
            max_amount(asset.scale)
        ))
    })
}

/// `a - b` when it is not negative.
pub fn sub(a: Decimal, b: Decimal) -> Option<Decimal> {
    if a.scale() == b.scale() {
        // As in `add`: at one scale, a difference of minor units.
        let units = a.mantissa() - b.mantissa();
        return (units >= 0)
            .then(|| Decimal::try_from_i128_with_scale(units, a.scale()).ok())
            .flatten();
    }
    a.checked_sub(b).filter(|d| !d.is_sign_negative())
}

/// Minor units of an amount held at its asset's scale.
pub fn units(amount: Decimal) -> i128 {
    amount.mantissa()
}

/// `sell_amount * rate`, rounded down to the buy asset's scale. The remainder
/// is never created. Refused when the product cannot be computed exactly
/// (more than 28 decimal places, or out of range): rounding the product first
/// and flooring after could round *up* across the buy scale and create money.
pub fn convert(sell_amount: Decimal, rate: Decimal, buy: Asset) -> Result<Decimal, Reject> {
    if rate <= Decimal::ZERO {
        return Err(Reject::InvalidAmount(format!(
            "rate must be positive, got {rate}"
        )));
    }
    let exact_scale = sell_amount.scale() + rate.normalize().scale();
    let product = sell_amount
        .checked_mul(rate.normalize())
        .filter(|p| p.scale() == exact_scale)
        .ok_or_else(|| {
            Reject::InvalidAmount(format!(
                "{sell_amount} x {rate} cannot be computed exactly; use a rate with fewer decimals"
            ))
        })?;
    let mut buy_amount = product.round_dp_with_strategy(buy.scale, RoundingStrategy::ToZero);
    buy_amount.rescale(buy.scale);
    if buy_amount <= Decimal::ZERO {
        return Err(Reject::InvalidAmount(format!(
            "{sell_amount} x {rate} is less than the smallest unit of {}",
            buy.code
        )));
    }
    if buy_amount > max_amount(buy.scale) {
        return Err(Reject::InvalidAmount(format!(
            "buy amount {buy_amount} {} is out of range",
            buy.code
        )));
    }
    Ok(buy_amount)
}

/// Formats minor units at a scale ("-1234", 2 -> "-12.34"), for sums that may
/// not fit a `Decimal`.
pub fn format_units(units: i128, scale: u32) -> String {
    let digits = units.unsigned_abs().to_string();
    let sign = if units < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::AssetCode;
    use std::str::FromStr;

    fn asset(code: &str, scale: u32) -> Asset {
        Asset {
            code: AssetCode::new(code).unwrap(),
            scale,
        }
    }
    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn amounts_are_checked_against_scale_and_never_rounded() {
        let usd = asset("USD", 2);
        assert_eq!(validate(usd, d("10.5")).unwrap().to_string(), "10.50");
        assert_eq!(validate(usd, d("10.500")).unwrap().to_string(), "10.50");
        assert!(matches!(
            validate(usd, d("10.505")),
            Err(Reject::InvalidAmount(_))
        ));
        assert!(matches!(
            validate(usd, d("0")),
            Err(Reject::InvalidAmount(_))
        ));
        assert!(matches!(
            validate(usd, d("-1")),
            Err(Reject::InvalidAmount(_))
        ));
        let jpy = asset("JPY", 0);
        assert!(validate(jpy, d("1.0")).is_ok());
        assert!(validate(jpy, d("1.1")).is_err());
        let eth = asset("ETH", 18);
        assert!(validate(eth, d("0.000000000000000001")).is_ok());
        assert!(validate(eth, d("9999999999.999999999999999999")).is_ok());
        assert!(validate(eth, d("10000000000")).is_err());
    }

    #[test]
    fn sums_past_the_bound_are_refused_not_rounded() {
        let eth = asset("ETH", 18);
        let max = max_amount(18);
        assert!(add(eth, max, d("0.000000000000000001")).is_err());
        assert_eq!(add(eth, max - d("1"), d("1")).unwrap(), max);
        assert_eq!(sub(d("1"), d("2")), None);
        assert_eq!(sub(d("2"), d("2")), Some(Decimal::ZERO));
    }

    #[test]
    fn conversion_rounds_down_and_refuses_inexact_products() {
        let eur = asset("EUR", 2);
        assert_eq!(
            convert(d("10.00"), d("0.9"), eur).unwrap().to_string(),
            "9.00"
        );
        assert_eq!(
            convert(d("10.01"), d("0.333"), eur).unwrap().to_string(),
            "3.33"
        );
        let btc = asset("BTC", 8);
        assert_eq!(
            convert(d("1.00"), d("0.00001234"), btc)
                .unwrap()
                .to_string(),
            "0.00001234"
        );
        assert!(convert(d("0.01"), d("0.1"), eur).is_err(), "rounds to zero");
        assert!(convert(d("1.00"), d("0"), eur).is_err());
        // 18 + 12 decimal places: the product would be rounded by rust_decimal.
        let eth = asset("ETH", 18);
        assert!(convert(d("1.000000000000000001"), d("1.000000000001"), eth).is_err());
    }

    #[test]
    fn units_format_at_any_scale() {
        assert_eq!(format_units(1234, 2), "12.34");
        assert_eq!(format_units(-5, 2), "-0.05");
        assert_eq!(format_units(7, 0), "7");
        assert_eq!(format_units(1, 18), "0.000000000000000001");
        assert_eq!(format_units(0, 2), "0.00");
    }

    proptest::proptest! {
        /// The unit paths of `add` and `sub` give what `rust_decimal`'s
        /// general arithmetic gives: the same value at the same scale, and
        /// the same refusals.
        #[test]
        fn unit_arithmetic_agrees_with_decimal_arithmetic(
            a in 0i128..=MAX_UNITS,
            b in 0i128..=MAX_UNITS,
            small in 0i128..1_000_000,
            scale in 0u32..=18,
        ) {
            let usd = asset("USD", scale);
            for (x, y) in [(a, b), (small, b), (a, small), (small, small)] {
                let (x, y) = (
                    Decimal::from_i128_with_scale(x, scale),
                    Decimal::from_i128_with_scale(y, scale),
                );
                let general = x.checked_add(y).filter(|s| *s <= max_amount(scale));
                let fast = add(usd, x, y).ok();
                proptest::prop_assert_eq!(fast.map(|s| (s, s.scale())), general.map(|s| (s, s.scale())));
                let general = x.checked_sub(y).filter(|d| !d.is_sign_negative());
                let fast = sub(x, y);
                proptest::prop_assert_eq!(fast.map(|d| (d, d.scale())), general.map(|d| (d, d.scale())));
            }
        }
    }
}
