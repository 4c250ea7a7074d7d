//! systemd's notify protocol: readiness, status, watchdog pings, reload and stop.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, so services run the same way
//! under systemd, in a container, or in a terminal.

use sd_notify::NotifyState;
use std::time::Duration;
use tracing::debug;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "sd_notify failed");
    }
}

/// `READY=1` with a status line: the listeners accept.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A `STATUS=` line.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` while the configuration is re-read.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// If systemd asked for watchdog pings, send `WATCHDOG=1` at half the interval for as long as
/// the runtime is alive; a wedged runtime stops pinging and systemd restarts the service.
pub fn spawn_watchdog() -> Option<Duration> {
    let every = sd_notify::watchdog_enabled()? / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
    Some(every)
}
