//! Timestamps for HTTP bodies.

use std::time::SystemTime;

/// Now as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (the shape upstream's `/healthz` sends).
pub fn now_iso8601() -> String {
    iso8601_micros(SystemTime::now())
}

fn iso8601_micros(t: SystemTime) -> String {
    let mut text = humantime::format_rfc3339_micros(t).to_string();
    // humantime writes UTC as `Z`; upstream (Python's isoformat) writes `+00:00`.
    if text.ends_with('Z') {
        text.pop();
        text.push_str("+00:00");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64, micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601_micros(at(0, 0)), "1970-01-01T00:00:00.000000+00:00");
        // 2000-02-29 12:34:56 UTC, a leap day
        assert_eq!(
            iso8601_micros(at(951_827_696, 42)),
            "2000-02-29T12:34:56.000042+00:00"
        );
        assert_eq!(
            iso8601_micros(at(1_795_651_200, 0)),
            "2026-11-26T00:00:00.000000+00:00"
        );
    }
}
