//! What the commands tell the operator: a progress bar on a terminal, JSON lines with `--json`
//! (`progress`, `notice`, `snapshot`, `summary`, `error` and per-command records), and otherwise
//! one summary line on stdout with notices and errors on stderr.

use super::Failure;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often `--json` prints a progress line.
const JSON_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Where and how output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// JSON lines on stdout.
    Json,
    /// A progress bar on stderr (a terminal), the summary on stdout.
    Terminal,
    /// No progress; the summary on stdout.
    Plain,
}

impl Output {
    /// `--json`, else a progress bar when stderr is a terminal.
    pub fn detect(json: bool) -> Output {
        if json {
            Output::Json
        } else if std::io::stderr().is_terminal() {
            Output::Terminal
        } else {
            Output::Plain
        }
    }
}

/// Progress of a copy or a verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes expected (an estimate while copying).
    pub bytes_total: u64,
    /// Environments done.
    pub envs_done: usize,
    /// Environments in all.
    pub envs_total: usize,
}

/// Reports one command's progress and outcome.
pub struct Reporter {
    output: Output,
    command: &'static str,
    bar: Option<ProgressBar>,
    last_json: Option<Instant>,
}

impl Reporter {
    /// A reporter for `command` (`backup`, `verify`, `restore`, ...), used in messages.
    pub fn new(output: Output, command: &'static str) -> Reporter {
        Reporter {
            output,
            command,
            bar: None,
            last_json: None,
        }
    }

    /// Whether output is JSON lines.
    pub fn is_json(&self) -> bool {
        self.output == Output::Json
    }

    fn json_line(&self, kind: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("type".into(), Value::from(kind));
        if let Value::Object(fields) = fields {
            obj.extend(fields);
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", Value::Object(obj));
        let _ = out.flush();
    }

    fn to_stderr(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("syn {}: {text}", self.command)),
            None => eprintln!("syn {}: {text}", self.command),
        }
    }

    /// Something the operator should know that is not an error.
    pub fn notice(&mut self, message: &str) {
        if self.is_json() {
            self.json_line("notice", json!({ "message": message }));
        } else {
            self.to_stderr(message);
        }
    }

    /// A JSON-only event (`snapshot`, ...); silent otherwise.
    pub fn event(&mut self, kind: &str, fields: Value) {
        if self.is_json() {
            self.json_line(kind, fields);
        }
    }

    /// Start showing progress.
    pub fn start_progress(&mut self, what: &str, progress: Progress) {
        if self.output == Output::Terminal {
            let bar = ProgressBar::with_draw_target(
                Some(progress.bytes_total),
                ProgressDrawTarget::stderr(),
            );
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
        self.last_json = None;
        self.progress(progress);
    }

    /// Show progress (JSON lines at most once a second).
    pub fn progress(&mut self, p: Progress) {
        match self.output {
            Output::Terminal => {
                if let Some(bar) = &self.bar {
                    bar.set_length(p.bytes_total.max(p.bytes_done));
                    bar.set_position(p.bytes_done);
                    bar.set_message(format!("envs {}/{}", p.envs_done, p.envs_total));
                }
            }
            Output::Json => {
                let due = self
                    .last_json
                    .is_none_or(|t| t.elapsed() >= JSON_PROGRESS_EVERY);
                if due {
                    self.last_json = Some(Instant::now());
                    self.json_progress(p);
                }
            }
            Output::Plain => {}
        }
    }

    fn json_progress(&self, p: Progress) {
        self.json_line(
            "progress",
            json!({
                "bytes_done": p.bytes_done,
                "bytes_total": p.bytes_total,
                "envs_done": p.envs_done,
                "envs_total": p.envs_total,
            }),
        );
    }

    /// Stop showing progress; JSON gets a last progress line.
    pub fn finish_progress(&mut self, last: Progress) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.is_json() {
            self.json_progress(last);
        }
    }

    /// The outcome, on one line (JSON: a `summary` object with `fields`).
    pub fn summary(&mut self, line: &str, fields: Value) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.is_json() {
            self.json_line("summary", fields);
        } else {
            println!("{line}");
        }
    }

    /// One record of a listing (`list`, `prune`): a line of text, or a JSON line of `kind`.
    pub fn record(&mut self, kind: &str, line: &str, fields: Value) {
        if self.is_json() {
            self.json_line(kind, fields);
        } else {
            println!("{line}");
        }
    }

    /// The failure, on one line, with its exit code.
    pub fn error(&mut self, failure: &Failure) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.is_json() {
            self.json_line(
                "error",
                json!({ "code": failure.exit.code(), "message": failure.message }),
            );
        } else {
            self.to_stderr(&failure.message);
        }
    }
}
