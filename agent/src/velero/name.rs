//! Backup names as the Platform's runbooks make them: `<reg>-<YYYY-MM-DD-HH-MM-SS>`.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// `<reg>-<YYYY-MM-DD-HH-MM-SS>` at `at`, in UTC so that both clusters and
/// the coordinator agree on the name whatever their local zones.
pub fn backup_name(registry: &str, at: Timestamp) -> String {
    let t = at.to_zoned(TimeZone::UTC);
    format!("{registry}-{}", t.strftime("%Y-%m-%d-%H-%M-%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc() -> Result<(), jiff::Error> {
        let at: Timestamp = "2026-03-04T05:06:07+02:00".parse()?;
        assert_eq!(backup_name("reg", at), "reg-2026-03-04-03-06-07");
        Ok(())
    }
}
