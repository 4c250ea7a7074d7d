//! `--limit-rate`: the copies of one backup together move at most so many bytes a second, so
//! that a live backup leaves the disk (and the CPU that hashes) to the running service.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The environment variable that sets the rate limit when `--limit-rate` is not given (for
/// the systemd units' environment files and the runbooks' `backup`). Empty means no limit.
pub const LIMIT_RATE_ENV: &str = "SYN_BACKUP_LIMIT_RATE";

/// Paces every copy of one backup to a shared rate. Bytes are let through in the order they
/// are asked for, each chunk once the previous ones have had their time: a chunk may start
/// at once only if the copies have kept to the rate so far, and time in which nothing was
/// copied is not saved up for a burst later.
pub(super) struct RateLimit {
    bytes_per_sec: u64,
    start: Instant,
    /// When, counted from `start`, the next bytes may go.
    next_free: Mutex<Duration>,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (more than 0), starting now.
    pub(super) fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit {
            bytes_per_sec: bytes_per_sec.max(1),
            start: Instant::now(),
            next_free: Mutex::new(Duration::ZERO),
        }
    }

    /// Account for `bytes` about to be copied; how long the caller must wait before it copies
    /// them.
    pub(super) fn take(&self, bytes: u64) -> Duration {
        let mut next_free = self
            .next_free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (wait, next) = schedule(*next_free, self.start.elapsed(), bytes, self.bytes_per_sec);
        *next_free = next;
        wait
    }
}

/// For `bytes` asked for at `now` when the next bytes may go at `next_free`: how long they
/// wait, and when the bytes after them may go.
fn schedule(
    next_free: Duration,
    now: Duration,
    bytes: u64,
    bytes_per_sec: u64,
) -> (Duration, Duration) {
    let begin = next_free.max(now);
    let takes = Duration::from_secs_f64(bytes as f64 / bytes_per_sec as f64);
    (begin - now, begin + takes)
}

/// A rate in bytes a second: a number with an optional unit `K`, `M`, `G` or `T` (powers of
/// 1024; `KiB`, `MB`, ... and a trailing `/s` are read the same way): `50M`, `1.5G`, `800K`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let lower = lower.strip_suffix("/s").unwrap_or(&lower);
    let lower = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(lower);
    let (number, scale) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let bad = || format!("not a rate: {trimmed:?} (try 50M, 1.5G, 800K: bytes a second)");
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let rate = value * scale as f64;
    if !(rate.is_finite() && rate >= 1.0 && rate < u64::MAX as f64) {
        return Err(format!("{}: must be at least 1 byte a second", bad()));
    }
    Ok(rate as u64)
}

/// The rate limit [`LIMIT_RATE_ENV`] sets, if any.
pub fn limit_rate_from_env() -> Result<Option<u64>, String> {
    match std::env::var(LIMIT_RATE_ENV) {
        Ok(text) if !text.trim().is_empty() => parse_rate(&text)
            .map(Some)
            .map_err(|e| format!("{LIMIT_RATE_ENV}: {e}")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50M"), Ok(50 * MIB));
        assert_eq!(parse_rate("50MiB"), Ok(50 * MIB));
        assert_eq!(parse_rate("50mb/s"), Ok(50 * MIB));
        assert_eq!(parse_rate("1.5G"), Ok(3 * 512 * MIB));
        assert_eq!(parse_rate("800K"), Ok(800 * 1024));
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate(" 2T "), Ok(2 << 40));
        for bad in ["", "0", "-5M", "fast", "5X", "0.1", "inf", "M"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    /// Copies that ask for chunks as fast as the limiter lets them (the clock moves only by the
    /// waits it hands out): at every moment the bytes let through are within the rate plus one
    /// chunk, and all of them take the time the rate gives them.
    #[test]
    fn copies_keep_to_the_rate_together() {
        let rate = 10 * MIB;
        let mut next_free = Duration::ZERO;
        // Four copies, each at the time it may ask again.
        let mut copies = [Duration::ZERO; 4];
        let mut through = 0u64;
        for _ in 0..400 {
            // The copy that is ready first asks next.
            let (i, now) = copies
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|(_, t)| *t)
                .unwrap();
            let (wait, next) = schedule(next_free, now, MIB, rate);
            next_free = next;
            let at = now + wait;
            through += MIB;
            assert!(
                through as f64 <= rate as f64 * at.as_secs_f64() + MIB as f64 + 1.0,
                "{through} bytes by {at:?}"
            );
            copies[i] = at;
        }
        // 400 MiB at 10 MiB/s: the last chunk starts at 39.9 s.
        let last = copies.iter().max().unwrap();
        assert_eq!(last.as_millis(), 39_900);
    }

    /// Time in which nothing was copied is not made up for by a burst.
    #[test]
    fn idle_time_is_not_saved_up() {
        let rate = MIB;
        let (wait, next) = schedule(Duration::ZERO, Duration::ZERO, MIB, rate);
        assert_eq!((wait, next), (Duration::ZERO, Duration::from_secs(1)));
        // Asked for 10 s later: goes at once, the next one second after.
        let (wait, next) = schedule(next, Duration::from_secs(10), MIB, rate);
        assert_eq!((wait, next), (Duration::ZERO, Duration::from_secs(11)));
        // Asked for at once again: waits its second.
        let (wait, _) = schedule(next, Duration::from_secs(10), MIB, rate);
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn the_limiter_hands_out_the_waits() {
        let before = Instant::now();
        let limit = RateLimit::new(MIB);
        assert_eq!(limit.take(MIB), Duration::ZERO);
        // The second MiB may go one second after the limiter began, however long the first
        // call took.
        let wait = limit.take(MIB);
        assert!(wait <= Duration::from_secs(1));
        assert!(wait + before.elapsed() >= Duration::from_secs(1));
    }
}
