//! Wall-clock time as syn records and prints it: epoch milliseconds, and UTC text forms of
//! them for logs, manifests, file names and certificates.

use time::OffsetDateTime;

/// Now, in epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Epoch milliseconds as a UTC date and time (the epoch itself if out of range).
pub fn utc(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Epoch milliseconds as UTC date and time, `2025-01-31T02:00:00.000Z`.
pub fn utc_string(ms: i64) -> String {
    let t = utc(ms);
    format!("{}.{:03}Z", date_time(t, "-", "T", ":"), t.millisecond())
}

/// Epoch milliseconds as a compact UTC stamp for file names, `20250131T020000Z`.
pub fn utc_stamp(ms: i64) -> String {
    format!("{}Z", date_time(utc(ms), "", "T", ""))
}

/// A time as RFC 3339 in UTC, to the second: `2025-01-31T02:00:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    format!(
        "{}Z",
        date_time(t.to_offset(time::UtcOffset::UTC), "-", "T", ":")
    )
}

/// `YYYY<d>MM<d>DD<sep>hh<t>mm<t>ss` of `t` as it is (no offset applied).
fn date_time(t: OffsetDateTime, d: &str, sep: &str, c: &str) -> String {
    format!(
        "{:04}{d}{:02}{d}{:02}{sep}{:02}{c}{:02}{c}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_string(1_738_288_800_123), "2025-01-31T02:00:00.123Z");
        assert_eq!(utc_stamp(1_738_288_800_123), "20250131T020000Z");
        let plus_two =
            utc(1_738_288_800_123).to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(rfc3339(plus_two), "2025-01-31T02:00:00Z");
        assert!(now_ms() > 1_738_288_800_123);
    }
}
