//! The audit trail of a runbook run: one JSON line per event (`start`, `step`, `log`, `end`)
//! appended to the audit file, and the same events as lines for people on stderr (the journal
//! under systemd, at the matching syslog level).

use crate::clock::{now_ms, utc_string};
use serde_json::{Map, Value, json};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How serious a line for people is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Progress and results.
    Info,
    /// Something to look at.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// The syslog priority journald reads from a `<N>` prefix.
    fn syslog_priority(self) -> u8 {
        match self {
            Level::Info => 6,
            Level::Warn => 4,
            Level::Error => 3,
        }
    }
}

/// The audit writer of one run.
pub struct Audit {
    file: Mutex<File>,
    path: PathBuf,
    run: String,
    runbook: String,
    to_journal: bool,
}

impl Audit {
    /// Open (append to, creating it if needed) the audit file of a run of `runbook`.
    pub fn open(path: &Path, run: &str, runbook: &str) -> std::io::Result<Audit> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(Audit {
            file: Mutex::new(file),
            path: path.to_owned(),
            run: run.to_owned(),
            runbook: runbook.to_owned(),
            // systemd sets JOURNAL_STREAM when stderr goes to the journal.
            to_journal: std::env::var_os("JOURNAL_STREAM").is_some(),
        })
    }

    /// The audit file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event (`fields` is a JSON object) to the audit file. An audit record that
    /// cannot be written is said on stderr; the run goes on.
    pub fn record(&self, event: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("time".into(), json!(utc_string(now_ms())));
        obj.insert("run".into(), json!(self.run));
        obj.insert("runbook".into(), json!(self.runbook));
        obj.insert("event".into(), json!(event));
        if let Value::Object(fields) = fields {
            obj.extend(fields);
        }
        let line = format!("{}\n", Value::Object(obj));
        let written = match self.file.lock() {
            Ok(mut f) => f.write_all(line.as_bytes()).and_then(|()| f.sync_data()),
            Err(_) => Ok(()),
        };
        if let Err(e) = written {
            self.say(
                Level::Warn,
                &format!("audit record not written to {}: {e}", self.path.display()),
            );
        }
    }

    /// One line for people on stderr.
    pub fn say(&self, level: Level, text: &str) {
        let prefix = if self.to_journal {
            format!("<{}>", level.syslog_priority())
        } else {
            String::new()
        };
        let word = match level {
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Error => "error: ",
        };
        eprintln!("{prefix}syn runbook: {word}{text}");
    }
}
