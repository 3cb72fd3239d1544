//! Kubernetes resource quantities (`1Gi`, `500Mi`, `10G`, `1.5Ti`, `1e3`) as
//! bytes, rounded up.

const BINARY: &[(&str, u32)] = &[
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL: &[(&str, i32)] = &[
    ("m", -1),
    ("k", 1),
    ("M", 2),
    ("G", 3),
    ("T", 4),
    ("P", 5),
    ("E", 6),
];

/// Bytes of a quantity; `None` when it is not one (or is negative or huge).
pub(crate) fn bytes(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let number_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(number_end);
    let (mantissa, mut exp10) = decimal(number)?;
    let mut factor: u128 = 1;
    if let Some((_, power)) = BINARY.iter().find(|(s, _)| *s == suffix) {
        factor = 1024u128.pow(*power);
    } else if let Some((_, power)) = DECIMAL.iter().find(|(s, _)| *s == suffix) {
        exp10 += 3 * power;
    } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
        exp10 += e.parse::<i32>().ok()?;
    } else if !suffix.is_empty() {
        return None;
    }
    let mut value = mantissa.checked_mul(factor)?;
    if exp10 >= 0 {
        value = value.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?;
    } else {
        value = value.div_ceil(10u128.checked_pow(exp10.unsigned_abs())?);
    }
    u64::try_from(value).ok()
}

/// `"1.25"` → (125, -2).
fn decimal(number: &str) -> Option<(u128, i32)> {
    let number = number.strip_prefix('+').unwrap_or(number);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let exp = -i32::try_from(frac.len()).ok()?;
    Some((digits.parse().ok()?, exp))
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn kubernetes_quantities() {
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("500Mi"), Some(500 << 20));
        assert_eq!(bytes("10G"), Some(10_000_000_000));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("1024"), Some(1024));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("2k"), Some(2000));
        assert_eq!(bytes("1500m"), Some(2));
        assert_eq!(bytes(" 8Ti "), Some(8 << 40));
        for bad in ["", "Gi", "1GB", "-1Gi", "1.2.3", "abc", "1e999"] {
            assert_eq!(bytes(bad), None, "{bad:?}");
        }
    }
}
