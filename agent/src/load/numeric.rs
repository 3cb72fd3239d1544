//! `numeric` text to PostgreSQL's binary form (base-10000 digits).

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// Largest display scale the binary receive function accepts.
const MAX_DSCALE: i64 = 0x3FFF;

/// Parse `v` (decimal, optional exponent, NaN, ±Infinity), check it fits
/// `numeric(p, s)` before rounding, and append the binary value.
pub fn encode(v: &[u8], typmod: Option<(u32, u32)>, out: &mut Vec<u8>) -> Result<(), String> {
    let v = v.trim_ascii();
    let (neg, body) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    if body.eq_ignore_ascii_case(b"nan") && body.len() == v.len() {
        return special(NUMERIC_NAN, typmod, out);
    }
    if body.eq_ignore_ascii_case(b"infinity") || body.eq_ignore_ascii_case(b"inf") {
        return special(if neg { NUMERIC_NINF } else { NUMERIC_PINF }, typmod, out);
    }
    let (mantissa, exp) = match body.iter().position(|&b| b == b'e' || b == b'E') {
        Some(i) => {
            let e = super::types::parse_int(&body[i + 1..]).ok_or("not a number")?;
            if !(-1000..=1000).contains(&e) {
                return Err("exponent out of range for numeric".into());
            }
            (&body[..i], e)
        }
        None => (body, 0),
    };
    let mut digits: Vec<u8> = Vec::with_capacity(mantissa.len());
    let mut int_digits: Option<i64> = None;
    for &b in mantissa {
        match b {
            b'0'..=b'9' => digits.push(b - b'0'),
            b'.' if int_digits.is_none() => int_digits = Some(digits.len() as i64),
            _ => return Err("not a number".into()),
        }
    }
    if digits.is_empty() {
        return Err("not a number".into());
    }
    let frac = digits.len() as i64 - int_digits.unwrap_or(digits.len() as i64);
    // `point`: how many of `digits` stand left of the decimal point.
    let mut point = digits.len() as i64 - frac + exp;
    let dscale = (frac - exp).max(0);
    if dscale > MAX_DSCALE {
        return Err("too many fractional digits for numeric".into());
    }
    let lead = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..lead);
    point -= lead as i64;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if let Some((p, s)) = typmod {
        let int_len = point.max(0);
        if !digits.is_empty() && int_len > i64::from(p) - i64::from(s) {
            return Err(format!(
                "too large for numeric({p},{s}): at most {} digits before the decimal point",
                i64::from(p) - i64::from(s)
            ));
        }
    }
    if digits.is_empty() {
        header(out, 0, 0, NUMERIC_POS, dscale as u16);
        return Ok(());
    }
    // Align on base-10000 groups: pad left so the point falls on a group edge.
    let pad = (4 - point.rem_euclid(4)) % 4;
    let weight = (point + pad) / 4 - 1;
    let total = pad as usize + digits.len();
    let ngroups = total.div_ceil(4);
    if ngroups > i16::MAX as usize || !(i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&weight)
    {
        return Err("out of range for numeric".into());
    }
    header(
        out,
        ngroups as i16,
        weight as i16,
        if neg { NUMERIC_NEG } else { NUMERIC_POS },
        dscale as u16,
    );
    for g in 0..ngroups {
        let mut n: u16 = 0;
        for k in 0..4 {
            let idx = (g * 4 + k) as i64 - pad;
            let d = if idx >= 0 {
                digits.get(idx as usize).copied().unwrap_or(0)
            } else {
                0
            };
            n = n * 10 + u16::from(d);
        }
        out.extend_from_slice(&n.to_be_bytes());
    }
    Ok(())
}

fn special(sign: u16, typmod: Option<(u32, u32)>, out: &mut Vec<u8>) -> Result<(), String> {
    if sign != NUMERIC_NAN && typmod.is_some() {
        return Err("infinity is not allowed in a numeric column with precision".into());
    }
    header(out, 0, 0, sign, 0);
    Ok(())
}

fn header(out: &mut Vec<u8>, ndigits: i16, weight: i16, sign: u16, dscale: u16) {
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &str) -> Vec<i16> {
        let mut out = Vec::new();
        encode(v.as_bytes(), None, &mut out).unwrap();
        out.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn binary_layout() {
        // ndigits, weight, sign, dscale, digits...
        assert_eq!(words("12345.678"), vec![3, 1, 0, 3, 1, 2345, 6780]);
        assert_eq!(words("-0.00001"), vec![1, -2, 0x4000, 5, 1000]);
        assert_eq!(words("0"), vec![0, 0, 0, 0]);
        assert_eq!(words("0.50"), vec![1, -1, 0, 2, 5000]);
        assert_eq!(words("1e4"), vec![1, 1, 0, 0, 1]);
        assert_eq!(words("10000"), vec![1, 1, 0, 0, 1]);
        assert_eq!(words("1.5e-1"), vec![1, -1, 0, 2, 1500]);
    }

    #[test]
    fn checks() {
        let mut out = Vec::new();
        assert!(encode(b"123.4", Some((3, 1)), &mut out).is_err());
        assert!(encode(b"12.3", Some((3, 1)), &mut out).is_ok());
        assert!(encode(b"12.34", Some((4, 1)), &mut out).is_ok());
        assert!(encode(b"1.2.3", None, &mut out).is_err());
        assert!(encode(b"abc", None, &mut out).is_err());
        assert!(encode(b"NaN", None, &mut out).is_ok());
    }
}
