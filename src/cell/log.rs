//! Logging: lines on stderr (text or JSON; journald collects stderr under systemd), a level
//! that SIGHUP can change, and the recent records kept in memory for the `logs` and `watch`
//! telepath methods.

use crate::msgpack::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// Records kept for `logs`.
const KEEP: usize = 1000;

/// The process's log state: recent records, a feed of new ones, and the level switch.
pub struct Logs {
    recent: Mutex<VecDeque<Value>>,
    feed: broadcast::Sender<Value>,
    filter: Mutex<Option<reload::Handle<EnvFilter, Registry>>>,
}

static LOGS: OnceLock<Arc<Logs>> = OnceLock::new();

/// The process-wide log state (records are kept even before [`init`] is called).
pub fn logs() -> Arc<Logs> {
    LOGS.get_or_init(|| {
        Arc::new(Logs {
            recent: Mutex::new(VecDeque::with_capacity(KEEP)),
            feed: broadcast::channel(1024).0,
            filter: Mutex::new(None),
        })
    })
    .clone()
}

/// Install the logger: `format` is `text` or `json`, `level` a level name or filter directive.
/// `RUST_LOG`, when set, overrides `level`.
pub fn init(format: &str, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let (filter, handle) = reload::Layer::new(filter);
    let state = logs();
    *state.filter.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let output = if format == "json" {
        stderr.json().flatten_event(true).boxed()
    } else {
        stderr.with_target(false).boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(Capture { logs: state })
        .try_init();
}

impl Logs {
    /// Change the level (ignored if the logger is not installed or the level is invalid).
    pub fn set_level(&self, level: &str) {
        if let (Some(handle), Ok(filter)) = (
            self.filter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref(),
            EnvFilter::try_new(level),
        ) {
            let _ = handle.reload(filter);
        }
    }

    /// Up to `last` most recent records, oldest first.
    pub fn recent(&self, last: usize) -> Vec<Value> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .skip(recent.len().saturating_sub(last))
            .cloned()
            .collect()
    }

    /// New records as they are written.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.feed.subscribe()
    }

    fn push(&self, record: Value) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(record.clone());
        drop(recent);
        let _ = self.feed.send(record);
    }
}

struct Capture {
    logs: Arc<Logs>,
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let record = Value::map([
            ("time", Value::from(time)),
            ("level", Value::from(meta.level().as_str())),
            ("logger", Value::map([("name", Value::from(meta.target()))])),
            ("message", Value::from(fields.message)),
            ("params", Value::Map(fields.params)),
        ]);
        self.logs.push(record);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    params: Vec<(Value, Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.params.push((field.name().into(), text.into()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.params.push((field.name().into(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.params.push((field.name().into(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.params.push((field.name().into(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.params.push((field.name().into(), value.into()));
    }
}
