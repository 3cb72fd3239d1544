//! Rewriting the source cluster's domain to the target's in text and JSON.
//! The rewrite is idempotent even when the new domain contains the old one
//! (`apps.x.com` → `apps.x.com.au`): text already naming the new domain is
//! left as it is.

use serde_json::Value;

/// `text` with every `from` that is not already part of a `to` replaced by
/// `to`; `None` when nothing changed.
pub(crate) fn replace_domain(text: &str, from: &str, to: &str) -> Option<String> {
    if from.is_empty() || from == to || !text.contains(from) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find(from) {
        // A `to` that starts at or before this `from` and covers it is kept.
        let window_start = i.saturating_sub(to.len());
        let covered = (window_start..=i)
            .filter(|s| rest.is_char_boundary(*s))
            .find(|s| rest[*s..].starts_with(to) && s + to.len() >= i + from.len());
        match covered {
            Some(s) => {
                out.push_str(&rest[..s + to.len()]);
                rest = &rest[s + to.len()..];
            }
            None => {
                out.push_str(&rest[..i]);
                out.push_str(to);
                rest = &rest[i + from.len()..];
                changed = true;
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Rewrites every string in `value` (not the keys); `true` when any changed.
pub(crate) fn rewrite_json(value: &mut Value, from: &str, to: &str) -> bool {
    match value {
        Value::String(s) => match replace_domain(s, from, to) {
            Some(new) => {
                *s = new;
                true
            }
            None => false,
        },
        // Every value is visited: no short-circuit.
        Value::Array(items) => items
            .iter_mut()
            .map(|v| rewrite_json(v, from, to))
            .fold(false, |a, b| a | b),
        Value::Object(map) => map
            .values_mut()
            .map(|v| rewrite_json(v, from, to))
            .fold(false, |a, b| a | b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "apps.a.example.com";
    const B: &str = "apps.b.example.com";

    #[test]
    fn replaces_every_occurrence_once() {
        let text = "https://x.apps.a.example.com,jenkins.apps.a.example.com";
        let once = replace_domain(text, A, B);
        assert_eq!(
            once.as_deref(),
            Some("https://x.apps.b.example.com,jenkins.apps.b.example.com")
        );
        assert_eq!(once.and_then(|t| replace_domain(&t, A, B)), None);
        assert_eq!(replace_domain("nothing here", A, B), None);
        assert_eq!(replace_domain(A, A, A), None);
    }

    #[test]
    fn idempotent_when_the_new_domain_contains_the_old() {
        let (from, to) = ("apps.x.com", "apps.x.com.au");
        let once = replace_domain("a.apps.x.com/b", from, to);
        assert_eq!(once.as_deref(), Some("a.apps.x.com.au/b"));
        assert_eq!(replace_domain("a.apps.x.com.au/b", from, to), None);
        let (from, to) = ("x.com", "apps.x.com");
        assert_eq!(
            replace_domain("h.x.com", from, to).as_deref(),
            Some("h.apps.x.com")
        );
        assert_eq!(replace_domain("h.apps.x.com", from, to), None);
    }

    #[test]
    fn walks_values_not_keys() {
        let mut v =
            json!({"apps.a.example.com": ["h.apps.a.example.com", 1, {"u": "apps.a.example.com"}]});
        assert!(rewrite_json(&mut v, A, B));
        assert_eq!(
            v,
            json!({"apps.a.example.com": ["h.apps.b.example.com", 1, {"u": "apps.b.example.com"}]})
        );
        assert!(!rewrite_json(&mut v, A, B));
    }
}
