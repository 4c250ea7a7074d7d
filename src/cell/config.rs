//! Service configuration: one list of options per service, read from `DIR/cell.toml`,
//! `SYN_<SERVICE>_<KEY>` environment variables and `--key` flags.
//!
//! A flag beats the environment, which beats the file, which beats the default. Each option is
//! declared once as an [`Opt`]; the flags, the environment names, the file's keys and `--help`
//! all come from that declaration. An unknown key or a bad value is one error line naming
//! where it came from (the file's line and column, the variable, or the flag).

use std::collections::BTreeMap;
use std::path::Path;

/// The file, inside a service directory, that holds its configuration.
pub const CONFIG_FILE: &str = "cell.toml";

/// What values an option takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// An integer.
    Int,
    /// A string.
    Str,
    /// A string that is never logged or shown.
    Secret,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A list of strings: a TOML array, a comma-separated variable, or a repeated flag.
    List,
}

/// One configuration option.
#[derive(Clone, Debug)]
pub struct Opt {
    /// The key, as written in the file and as the flag (`auth-passwd` is `--auth-passwd`).
    pub key: &'static str,
    /// The values it takes.
    pub kind: Kind,
    /// The default, written as it would be in the environment (lists comma-separated).
    pub default: Option<&'static str>,
    /// One line for `--help`.
    pub help: &'static str,
}

/// A configured value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string (also for secrets and choices).
    Str(String),
    /// A list of strings.
    List(Vec<String>),
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The option's default.
    Default,
    /// The configuration file.
    File,
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag,
}

/// A configuration error: one line that says what and where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The options of the cell runtime, which every service has.
pub fn cell_options() -> Vec<Opt> {
    vec![
        Opt {
            key: "telepath",
            kind: Kind::List,
            default: Some("tcp://0.0.0.0:27492"),
            help: "telepath listen URLs (tcp://HOST:PORT, ssl://HOST:PORT/?hostname=NAME[,NAME2][&ca=CA]); repeat for several; the unix socket DIR/sock is always served",
        },
        Opt {
            key: "certdir",
            kind: Kind::Str,
            default: None,
            help: "certificate directory for ssl:// listeners (cas/, hosts/, users/); unset: $SYN_CERTDIR, else DIR/certs, else ~/.syn/certs",
        },
        Opt {
            key: "auth-passwd",
            kind: Kind::Secret,
            default: None,
            help: "set root's password at start (TCP callers must log in)",
        },
        Opt {
            key: "log-format",
            kind: Kind::Choice(&["text", "json"]),
            default: Some("text"),
            help: "log line format on stderr",
        },
        Opt {
            key: "log-level",
            kind: Kind::Choice(&["error", "warn", "info", "debug", "trace"]),
            default: Some("info"),
            help: "least severe log level to write",
        },
        Opt {
            key: "shutdown-timeout",
            kind: Kind::Int,
            default: Some("10"),
            help: "seconds calls in flight may take to finish at shutdown before they are cancelled",
        },
    ]
}

/// A service's options and how to name them.
#[derive(Clone, Debug)]
pub struct ConfigSpec {
    /// The service type (`cell`, `cortex`, ...), used for `SYN_<SERVICE>_<KEY>`.
    pub service: &'static str,
    /// Every option, cell runtime's first.
    pub opts: Vec<Opt>,
}

impl ConfigSpec {
    /// The cell runtime's options plus the service's own.
    pub fn new(service: &'static str, extra: Vec<Opt>) -> Self {
        let mut opts = cell_options();
        opts.extend(extra);
        ConfigSpec { service, opts }
    }

    /// The environment variable for `key`: `SYN_CORTEX_AUTH_PASSWD` for `auth-passwd`.
    pub fn env_name(&self, key: &str) -> String {
        format!("SYN_{}_{}", self.service, key)
            .to_ascii_uppercase()
            .replace(['-', ':'], "_")
    }

    /// clap arguments for every option.
    pub fn clap_args(&self) -> Vec<clap::Arg> {
        self.opts
            .iter()
            .map(|o| {
                let mut help = o.help.to_owned();
                if let Some(d) = o.default {
                    help.push_str(&format!(" [default: {d}]"));
                }
                help.push_str(&format!(" [env: {}]", self.env_name(o.key)));
                let arg = clap::Arg::new(o.key)
                    .long(o.key)
                    .help(help)
                    .value_name(match o.kind {
                        Kind::Bool => "BOOL",
                        Kind::Int => "N",
                        Kind::List => "URL",
                        _ => "VALUE",
                    });
                match o.kind {
                    Kind::List => arg.action(clap::ArgAction::Append),
                    _ => arg.action(clap::ArgAction::Set),
                }
            })
            .collect()
    }

    /// Resolve every option for the service in `dir`: file, then environment, then flags.
    pub fn load(
        &self,
        dir: &Path,
        flags: &clap::ArgMatches,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut conf = Config {
            values: BTreeMap::new(),
            sources: BTreeMap::new(),
        };
        for o in &self.opts {
            if let Some(d) = o.default {
                let v = parse_text(o, d)
                    .map_err(|e| ConfigError(format!("default of {}: {e}", o.key)))?;
                conf.set(o.key, v, Source::Default);
            }
        }
        let path = dir.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => self.apply_file(&mut conf, &path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ConfigError(format!("cannot read {}: {e}", path.display()))),
        }
        for o in &self.opts {
            let var = self.env_name(o.key);
            if let Some(text) = env(&var) {
                let v = parse_text(o, &text).map_err(|e| ConfigError(format!("{var}: {e}")))?;
                conf.set(o.key, v, Source::Env(var));
            }
        }
        for o in &self.opts {
            let Some(raw) = flags.get_raw(o.key) else {
                continue;
            };
            let texts: Vec<String> = raw.map(|s| s.to_string_lossy().into_owned()).collect();
            let v = if o.kind == Kind::List {
                OptValue::List(texts)
            } else {
                let text = texts.last().map(String::as_str).unwrap_or("");
                parse_text(o, text).map_err(|e| ConfigError(format!("--{}: {e}", o.key)))?
            };
            conf.set(o.key, v, Source::Flag);
        }
        Ok(conf)
    }

    fn apply_file(&self, conf: &mut Config, path: &Path, text: &str) -> Result<(), ConfigError> {
        type Doc = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
        let doc: Doc = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| line_col(text, s.start))
                .map(|(l, c)| format!(" line {l}, column {c}"))
                .unwrap_or_default();
            ConfigError(format!("{}{at}: {}", path.display(), e.message().trim()))
        })?;
        for (key, value) in doc {
            let (line, col) = line_col(text, key.span().start);
            let here = format!("{} line {line}, column {col}", path.display());
            let Some(o) = self.opts.iter().find(|o| o.key == key.get_ref()) else {
                let known: Vec<&str> = self.opts.iter().map(|o| o.key).collect();
                return Err(ConfigError(format!(
                    "{here}: unknown option {:?} (known: {})",
                    key.get_ref(),
                    known.join(", ")
                )));
            };
            let v = from_toml(o, value.get_ref()).map_err(|e| {
                let (line, col) = line_col(text, value.span().start);
                ConfigError(format!(
                    "{} line {line}, column {col}: {}: {e}",
                    path.display(),
                    o.key
                ))
            })?;
            conf.set(o.key, v, Source::File);
        }
        Ok(())
    }
}

/// The resolved configuration of one service.
#[derive(Clone, Debug)]
pub struct Config {
    values: BTreeMap<&'static str, OptValue>,
    sources: BTreeMap<&'static str, Source>,
}

impl Config {
    fn set(&mut self, key: &'static str, v: OptValue, src: Source) {
        self.values.insert(key, v);
        self.sources.insert(key, src);
    }

    /// A string option (also secrets and choices), if set.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(OptValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A boolean option, `false` if unset.
    pub fn bool(&self, key: &str) -> bool {
        matches!(self.values.get(key), Some(OptValue::Bool(true)))
    }

    /// An integer option, if set.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.values.get(key) {
            Some(OptValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A list option, empty if unset.
    pub fn list(&self, key: &str) -> &[String] {
        match self.values.get(key) {
            Some(OptValue::List(l)) => l,
            _ => &[],
        }
    }

    /// Where an option's value came from.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.sources.get(key)
    }

    /// Every option and its value as text, secrets hidden, for `--check-config`.
    pub fn describe(&self, spec: &ConfigSpec) -> Vec<String> {
        spec.opts
            .iter()
            .map(|o| {
                let value = match (self.values.get(o.key), o.kind) {
                    (None, _) => "(unset)".to_owned(),
                    (Some(_), Kind::Secret) => "(set, hidden)".to_owned(),
                    (Some(OptValue::List(l)), _) => l.join(", "),
                    (Some(OptValue::Str(s)), _) => s.clone(),
                    (Some(OptValue::Int(i)), _) => i.to_string(),
                    (Some(OptValue::Bool(b)), _) => b.to_string(),
                };
                let from = match self.sources.get(o.key) {
                    Some(Source::Default) => "default".to_owned(),
                    Some(Source::File) => CONFIG_FILE.to_owned(),
                    Some(Source::Env(v)) => v.clone(),
                    Some(Source::Flag) => format!("--{}", o.key),
                    None => "-".to_owned(),
                };
                format!("{} = {value}  ({from})", o.key)
            })
            .collect()
    }
}

fn parse_text(o: &Opt, text: &str) -> Result<OptValue, String> {
    match o.kind {
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(OptValue::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(OptValue::Bool(false)),
            _ => Err(format!("expected true or false, got {text:?}")),
        },
        Kind::Int => text
            .trim()
            .parse()
            .map(OptValue::Int)
            .map_err(|_| format!("expected an integer, got {text:?}")),
        Kind::Str | Kind::Secret => Ok(OptValue::Str(text.to_owned())),
        Kind::Choice(choices) => {
            if choices.contains(&text) {
                Ok(OptValue::Str(text.to_owned()))
            } else {
                Err(format!(
                    "expected one of {}, got {text:?}",
                    choices.join(", ")
                ))
            }
        }
        Kind::List => Ok(OptValue::List(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
    }
}

fn from_toml(o: &Opt, v: &toml::Value) -> Result<OptValue, String> {
    match (o.kind, v) {
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(OptValue::Bool(*b)),
        (Kind::Int, toml::Value::Integer(i)) => Ok(OptValue::Int(*i)),
        (Kind::Str | Kind::Secret | Kind::Choice(_), toml::Value::String(s)) => parse_text(o, s),
        (Kind::List, toml::Value::String(s)) => Ok(OptValue::List(vec![s.clone()])),
        (Kind::List, toml::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or("expected a list of strings")
            })
            .collect::<Result<Vec<_>, _>>()
            .map(OptValue::List)
            .map_err(str::to_owned),
        (kind, other) => Err(format!(
            "expected {}, got {}",
            kind_name(kind),
            other.type_str()
        )),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "a boolean",
        Kind::Int => "an integer",
        Kind::Str | Kind::Secret | Kind::Choice(_) => "a string",
        Kind::List => "a list of strings",
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Write a commented default `cell.toml` listing every option of `spec`.
pub fn default_file(spec: &ConfigSpec) -> String {
    let mut out = format!(
        "# Configuration of a syn {} service. Every key can also be given as a --flag or\n\
         # as an environment variable; a flag beats the environment, which beats this file.\n",
        spec.service
    );
    for o in &spec.opts {
        out.push_str(&format!(
            "\n# {}\n# env: {}\n",
            o.help,
            spec.env_name(o.key)
        ));
        let example = match (o.kind, o.default) {
            (Kind::List, Some(d)) => format!(
                "[{}]",
                d.split(',')
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Kind::Int | Kind::Bool, Some(d)) => d.to_owned(),
            (_, Some(d)) => format!("{d:?}"),
            (_, None) => "\"\"".to_owned(),
        };
        out.push_str(&format!("# {} = {example}\n", o.key));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConfigSpec {
        ConfigSpec::new(
            "cortex",
            vec![Opt {
                key: "cron-enable",
                kind: Kind::Bool,
                default: Some("true"),
                help: "run cron jobs",
            }],
        )
    }

    fn matches(args: &[&str]) -> clap::ArgMatches {
        clap::Command::new("t")
            .args(spec().clap_args())
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "log-level = \"debug\"\nshutdown-timeout = 3\ntelepath = [\"tcp://127.0.0.1:1\"]\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "SYN_CORTEX_SHUTDOWN_TIMEOUT" => Some("4".to_owned()),
            "SYN_CORTEX_CRON_ENABLE" => Some("false".to_owned()),
            _ => None,
        };
        let conf = spec()
            .load(
                dir.path(),
                &matches(&[
                    "--cron-enable",
                    "true",
                    "--telepath",
                    "tcp://a:1",
                    "--telepath",
                    "tcp://b:2",
                ]),
                &env,
            )
            .unwrap();
        assert_eq!(conf.str("log-level"), Some("debug"));
        assert_eq!(conf.source("log-level"), Some(&Source::File));
        assert_eq!(conf.int("shutdown-timeout"), Some(4));
        assert!(conf.bool("cron-enable"));
        assert_eq!(conf.list("telepath"), ["tcp://a:1", "tcp://b:2"]);
        assert_eq!(conf.str("log-format"), Some("text"));
        assert_eq!(conf.source("log-format"), Some(&Source::Default));
    }

    #[test]
    fn file_errors_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, "log-level = \"info\"\n  bogus = 1\n").unwrap();
        let err = spec()
            .load(dir.path(), &matches(&[]), &|_| None)
            .unwrap_err()
            .0;
        assert!(
            err.contains("line 2, column 3") && err.contains("unknown option \"bogus\""),
            "{err}"
        );
        std::fs::write(&path, "shutdown-timeout = \"soon\"\n").unwrap();
        let err = spec()
            .load(dir.path(), &matches(&[]), &|_| None)
            .unwrap_err()
            .0;
        assert!(
            err.contains("line 1, column 20") && err.contains("expected an integer"),
            "{err}"
        );
        std::fs::write(&path, "log-format = \"xml\"\n").unwrap();
        let err = spec()
            .load(dir.path(), &matches(&[]), &|_| None)
            .unwrap_err()
            .0;
        assert!(err.contains("expected one of text, json"), "{err}");
        std::fs::write(&path, "log-level = \n").unwrap();
        let err = spec()
            .load(dir.path(), &matches(&[]), &|_| None)
            .unwrap_err()
            .0;
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn env_and_flag_errors_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let env = |k: &str| (k == "SYN_CORTEX_CRON_ENABLE").then(|| "maybe".to_owned());
        let err = spec().load(dir.path(), &matches(&[]), &env).unwrap_err().0;
        assert!(err.starts_with("SYN_CORTEX_CRON_ENABLE:"), "{err}");
        let err = spec()
            .load(dir.path(), &matches(&["--shutdown-timeout", "x"]), &|_| {
                None
            })
            .unwrap_err()
            .0;
        assert!(err.starts_with("--shutdown-timeout:"), "{err}");
    }

    #[test]
    fn the_default_file_parses_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let text = default_file(&spec());
        std::fs::write(dir.path().join(CONFIG_FILE), &text).unwrap();
        let conf = spec()
            .load(dir.path(), &matches(&["--auth-passwd", "hunter2"]), &|_| {
                None
            })
            .unwrap();
        let shown = conf.describe(&spec()).join("\n");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("auth-passwd = (set, hidden)  (--auth-passwd)"));
    }
}
