//! Keys and prefixes that come from the network never leave their prefix.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("object key {0:?} is refused: {1}")]
    Key(String, &'static str),
    #[error("prefix {0:?} is refused: {1}")]
    Prefix(String, &'static str),
}

fn segment_problem(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        Some("it has an empty path segment")
    } else if segment == "." || segment == ".." {
        Some("`.` and `..` segments could escape the prefix")
    } else if segment.chars().any(|c| c.is_control()) {
        Some("it contains control characters")
    } else if segment.contains('\\') {
        Some("it contains a backslash")
    } else {
        None
    }
}

/// A key relative to a prefix: non-empty, not absolute, no `.`/`..`/empty segments.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Key(key.into(), "it is empty"));
    }
    if key.starts_with('/') {
        return Err(KeyError::Key(key.into(), "absolute keys are not allowed"));
    }
    if key.len() > 1024 {
        return Err(KeyError::Key(
            key.chars().take(64).collect(),
            "it is longer than 1024 bytes",
        ));
    }
    match key.split('/').find_map(segment_problem) {
        Some(problem) => Err(KeyError::Key(key.into(), problem)),
        None => Ok(()),
    }
}

/// A prefix: empty (the whole store) or segments ending in an optional `/`.
pub fn check_prefix(prefix: &str) -> Result<(), KeyError> {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return Ok(());
    }
    if p.starts_with('/') {
        return Err(KeyError::Prefix(
            prefix.into(),
            "absolute prefixes are not allowed",
        ));
    }
    match p.split('/').find_map(segment_problem) {
        Some(problem) => Err(KeyError::Prefix(prefix.into(), problem)),
        None => Ok(()),
    }
}

/// Whether `prefix` lies inside `allowed`, on segment boundaries.
pub fn within(prefix: &str, allowed: &str) -> bool {
    let (p, a) = (prefix.trim_end_matches('/'), allowed.trim_end_matches('/'));
    a.is_empty() || p == a || p.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'))
}

/// `prefix` + `/` + `key`, after checking the key.
pub fn join(prefix: &str, key: &str) -> Result<String, KeyError> {
    check_key(key)?;
    let p = prefix.trim_end_matches('/');
    Ok(if p.is_empty() {
        key.to_string()
    } else {
        format!("{p}/{key}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_escape_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\\b",
            "a/\0",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b.c", "backups/reg-2026/velero-backup.json", "x..y"] {
            assert_eq!(check_key(good), Ok(()), "{good:?} refused");
        }
        assert_eq!(join("backups/", "a/b").as_deref(), Ok("backups/a/b"));
        assert_eq!(join("", "a").as_deref(), Ok("a"));
    }

    #[test]
    fn prefixes_nest_on_segment_boundaries() {
        assert!(within("backups/reg", "backups"));
        assert!(within("backups", "backups/"));
        assert!(within("anything", ""));
        assert!(!within("backupsX", "backups"));
        assert!(!within("other", "backups"));
        assert!(check_prefix("../x").is_err());
        assert!(check_prefix("/x").is_err());
        assert!(check_prefix("a/b/").is_ok());
    }
}
