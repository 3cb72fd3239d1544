//! Timestamps as Kubernetes writes them (RFC 3339, UTC, whole seconds).

pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    // Whole seconds, as metav1.Time serialises.
    match jiff::Timestamp::from_second(now.as_second()) {
        Ok(t) => t.to_string(),
        Err(_) => now.to_string(),
    }
}

/// `now + secs`, for a backup's expiration.
pub(crate) fn rfc3339_in(secs: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    match jiff::Timestamp::from_second(now.saturating_add(secs)) {
        Ok(t) => t.to_string(),
        Err(_) => now_rfc3339(),
    }
}

/// A Go duration such as `720h0m0s` or `30m`, in seconds (Velero's `ttl`).
pub(crate) fn parse_go_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        total += value
            * match unit.as_str() {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 0.001,
                _ => return None,
            };
        any = true;
    }
    (any && number.is_empty()).then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("720h0m0s"), Some(720 * 3600));
        assert_eq!(parse_go_duration("30m"), Some(1800));
        assert_eq!(parse_go_duration("5"), None);
        assert!(now_rfc3339().ends_with('Z'));
    }
}
