//! What a person watching a migration sees: a progress bar on a terminal (nodes per second,
//! ETA from the source's row count), `STATUS=` lines under systemd, and otherwise one line
//! every N nodes. Notices go to stderr as `syn migrate-200: ...`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A bar on stderr.
    Bar,
    /// `STATUS=` through the notify socket.
    Systemd,
    /// A line every N nodes on stderr.
    Lines(u64),
    /// Nothing (tests of the library).
    Quiet,
}

impl Mode {
    /// A bar on a terminal, systemd status when `NOTIFY_SOCKET` is set, else lines every
    /// `every` nodes.
    pub fn detect(every: u64) -> Mode {
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            Mode::Systemd
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines(every.max(1))
        }
    }
}

/// Progress through one layer's rows.
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    layer: String,
    started: Instant,
    nodes: u64,
    next_line: u64,
    last_status: Option<Instant>,
}

impl Progress {
    /// Start showing progress for `layer`, which holds about `rows` rows.
    pub fn start(mode: Mode, layer: &str, rows: u64, done_rows: u64) -> Progress {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {percent}% {msg} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("layer {}", &layer[..layer.len().min(8)]));
            bar.set_position(done_rows);
            bar
        });
        Progress {
            mode,
            bar,
            layer: layer.to_owned(),
            started: Instant::now(),
            nodes: 0,
            next_line: match mode {
                Mode::Lines(n) => n,
                _ => u64::MAX,
            },
            last_status: None,
        }
    }

    /// `nodes` more nodes of `rows` rows are done.
    pub fn advance(&mut self, nodes: u64, rows: u64) {
        self.nodes += nodes;
        let rate = self.nodes as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.inc(rows);
                    bar.set_message(format!("{} nodes, {rate:.0} nodes/s", self.nodes));
                }
            }
            Mode::Systemd => {
                if self.last_status.is_none_or(|t| t.elapsed().as_secs() >= 1) {
                    self.last_status = Some(Instant::now());
                    crate::cell::notify::status(&format!(
                        "migrating layer {}: {} nodes, {rate:.0} nodes/s",
                        self.layer, self.nodes
                    ));
                }
            }
            Mode::Lines(every) => {
                if self.nodes >= self.next_line {
                    self.next_line = (self.nodes / every + 1) * every;
                    notice(&format!(
                        "layer {}: {} nodes, {rate:.0} nodes/s",
                        self.layer, self.nodes
                    ));
                }
            }
            Mode::Quiet => {}
        }
    }

    /// Print a notice without tearing the bar.
    pub fn notice(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| notice(text)),
            None => notice(text),
        }
    }

    /// Stop showing progress.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One line on stderr for the operator.
pub fn notice(text: &str) {
    eprintln!("syn migrate-200: {text}");
}
