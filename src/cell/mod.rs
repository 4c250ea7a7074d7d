//! The cell: the runtime every service shares.
//!
//! A cell owns one directory ([`dir`]), reads its configuration ([`config`]), keeps users and
//! roles ([`auth`]), serves telepath on the unix socket and the configured URLs, speaks
//! systemd's notify protocol ([`notify`]), reloads on SIGHUP and stops cleanly on SIGTERM.
//! A service (cortex, axon, cryotank, or the bare cell) plugs in through [`Service`]: it gets
//! the open [`Cell`] and provides the API each authenticated session sees.

pub mod api;
pub mod auth;
pub mod config;
pub mod dir;
pub mod log;
pub mod notify;

use crate::certs::{CertDir, CertError};
use crate::clock::now_ms;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::Slab;
use crate::telepath::url::Endpoint;
use crate::telepath::{Api, Daemon, Hello, Peer, Shared, TeleUrl, TlsServer, api::BoxFut};
use anyhow::Context;
use api::CellApi;
use auth::Auth;
use config::{Config, ConfigSpec, Opt};
use dir::CellDir;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::{error, info, warn};

/// The version of syn itself.
pub const SYN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An open cell: directory, configuration, cell slab and auth.
pub struct Cell {
    dir: CellDir,
    /// The service type (`cell`, `cortex`, ...).
    pub kind: &'static str,
    /// A fresh iden for this run of the process.
    pub run_id: String,
    /// Start time, epoch milliseconds.
    pub started: i64,
    /// `slabs/cell.lmdb`: users, roles and service state.
    pub slab: Slab,
    /// Users and roles.
    pub auth: Arc<Auth>,
    conf: RwLock<Config>,
}

/// A service running inside a cell.
pub trait Service: Send + Sync + 'static {
    /// The API an authenticated session sees; `path` is what the client asked for after the
    /// share name (`cortex/layer/<iden>` gives `["layer", iden]`).
    fn api(self: Arc<Self>, session: Arc<CellApi>, path: &[String]) -> SynResult<Arc<dyn Api>>;

    /// Share names besides `*` that reach this service (`cortex` for a cortex).
    fn share_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Apply a configuration re-read on SIGHUP.
    fn reload(&self, _conf: &Config) {}

    /// Start the service's background work once it serves (a mirror's follower). If the
    /// task ends with an error, the service stops and exits with it.
    fn start(self: Arc<Self>) -> Option<tokio::task::JoinHandle<anyhow::Result<()>>> {
        None
    }

    /// Flush and close before the process exits.
    fn close(&self) {}
}

/// A switch that refuses changes with `IsReadOnly` and a reason while it is set (a mirror's
/// layers, catalog and auth take only what their leader sends).
#[derive(Debug, Default)]
pub struct ReadOnly(std::sync::RwLock<Option<String>>);

impl ReadOnly {
    /// Refuse changes with `why`, or take them again (`None`).
    pub fn set(&self, why: Option<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// `IsReadOnly` with the reason while set.
    pub fn check(&self) -> SynResult<()> {
        match &*self.0.read().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(SynErr::new("IsReadOnly", why.clone())),
            None => Ok(()),
        }
    }
}

/// Synapse's `NoSuchPath` for a share path a service does not serve.
pub fn no_such_path(path: &[String]) -> SynErr {
    SynErr::new("NoSuchPath", format!("no such path: {}", path.join("/"))).with(
        "path",
        Value::Array(path.iter().map(|p| p.as_str().into()).collect()),
    )
}

/// How to make one kind of service: its name, options and constructor.
pub struct ServiceKind<S> {
    /// The service type, also the subcommand and the `SYN_<NAME>_` prefix.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// The service's own options (the cell's are added).
    pub options: fn() -> Vec<Opt>,
    /// Open the service on an open cell.
    pub open: fn(Arc<Cell>) -> anyhow::Result<Arc<S>>,
}

impl<S> ServiceKind<S> {
    /// The service's configuration options.
    pub fn spec(&self) -> ConfigSpec {
        ConfigSpec::new(self.name, (self.options)())
    }

    /// The clap subcommand: `syn NAME DIR [--check-config] [--OPTION VALUE ...]`.
    pub fn command(&self) -> clap::Command {
        clap::Command::new(self.name)
            .about(self.about)
            .long_about(format!(
                "{}\n\nThe service's whole state lives in DIR, created on first start. Options come \
                 from flags, then SYN_{}_* environment variables, then DIR/{}, then defaults. \
                 SIGHUP reloads the configuration; SIGTERM stops the service cleanly.",
                self.about,
                self.name.to_ascii_uppercase(),
                config::CONFIG_FILE
            ))
            .arg(
                clap::Arg::new("dir")
                    .value_name("DIR")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("the service directory"),
            )
            .arg(
                clap::Arg::new("check-config")
                    .long("check-config")
                    .action(clap::ArgAction::SetTrue)
                    .help("validate the configuration, print it, and exit"),
            )
            .args(self.spec().clap_args())
    }
}

/// The bare cell: only the Cell API.
pub struct BareCell;

impl Service for BareCell {
    fn api(self: Arc<Self>, session: Arc<CellApi>, _path: &[String]) -> SynResult<Arc<dyn Api>> {
        Ok(session)
    }
}

/// `syn cell`.
pub const BARE_CELL: ServiceKind<BareCell> = ServiceKind {
    name: "cell",
    about: "Run a bare Synapse cell: users, roles and the Cell API over telepath",
    options: Vec::new,
    open: |_| Ok(Arc::new(BareCell)),
};

impl Cell {
    /// Open the cell in a locked directory with its configuration.
    pub fn open(dir: CellDir, kind: &'static str, conf: Config) -> anyhow::Result<Arc<Cell>> {
        let slab_path = dir.slab_path("cell");
        let slab = Slab::open(&slab_path, Default::default())
            .with_context(|| format!("opening {}", slab_path.display()))?;
        let auth = Auth::open(&slab).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Arc::new(Cell {
            dir,
            kind,
            run_id: crate::guid::guid(),
            started: now_ms(),
            slab,
            auth,
            conf: RwLock::new(conf),
        }))
    }

    /// The cell's iden (`cell.guid`).
    pub fn iden(&self) -> &str {
        self.dir.iden()
    }

    /// The service directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The open directory (for slab paths).
    pub fn dir(&self) -> &CellDir {
        &self.dir
    }

    /// The current configuration.
    pub fn conf(&self) -> Config {
        self.conf.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What `getCellInfo` answers.
    pub fn info(&self) -> Value {
        let (a, b, c) = crate::telepath::api::SYNAPSE_VERSION;
        let synvers = Value::Array(vec![a.into(), b.into(), c.into()]);
        let ours: Vec<Value> = SYN_VERSION
            .split('.')
            .map(|p| Value::from(p.parse::<i64>().unwrap_or(0)))
            .collect();
        Value::map([
            (
                "synapse",
                Value::map([
                    ("commit", "".into()),
                    ("version", synvers),
                    ("verstring", format!("{a}.{b}.{c}").into()),
                ]),
            ),
            (
                "software",
                Value::map([("name", "syn".into()), ("version", SYN_VERSION.into())]),
            ),
            (
                "cell",
                Value::map([
                    ("run", self.run_id.as_str().into()),
                    ("type", self.kind.into()),
                    ("iden", self.iden().into()),
                    ("paused", false.into()),
                    ("active", true.into()),
                    ("safemode", false.into()),
                    ("started", self.started.into()),
                    ("ready", true.into()),
                    ("commit", "".into()),
                    ("version", Value::Array(ours)),
                    ("verstring", SYN_VERSION.into()),
                    ("mirror", Value::Nil),
                ]),
            ),
            ("features", Value::Map(vec![])),
        ])
    }

    /// What `getSystemInfo` answers: disk, memory and uptime.
    pub fn system_info(&self) -> Value {
        let (volsize, volfree) = nix::sys::statvfs::statvfs(self.path())
            .map(|s| {
                let frag = s.fragment_size();
                (s.blocks() * frag, s.blocks_available() * frag)
            })
            .unwrap_or((0, 0));
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem = |key: &str| -> u64 {
            meminfo
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        Value::map([
            ("volsize", volsize.into()),
            ("volfree", volfree.into()),
            ("celluptime", (now_ms() - self.started).into()),
            ("totalmem", mem("MemTotal:").into()),
            ("availmem", mem("MemAvailable:").into()),
            ("osversion", std::env::consts::OS.into()),
            ("synversion", SYN_VERSION.into()),
        ])
    }

    /// Authenticate a handshake and return the user's iden.
    ///
    /// The unix socket is trusted (the named user, or root). A verified TLS client certificate
    /// logs in the user named by its common name. Otherwise a name and password are required;
    /// an unknown user and a wrong password get the same `AuthDeny`, so names cannot be probed.
    async fn login(self: &Arc<Self>, hello: &Hello) -> SynResult<String> {
        let name_of = |hello: &Hello| hello.auth.as_ref().map(|a| a.user.clone());
        if hello.peer == Peer::Unix {
            let name = name_of(hello).unwrap_or_else(|| auth::ROOT_USER.to_owned());
            return self
                .auth
                .user_by_name(&name)
                .map(|u| u.iden)
                .ok_or_else(|| {
                    SynErr::new("NoSuchUser", format!("No such user: {name}."))
                        .with("username", name)
                });
        }
        if let Peer::Tls {
            cert_cn: Some(cn), ..
        } = &hello.peer
        {
            return self.cert_login(cn);
        }
        let Some(creds) = hello.auth.clone() else {
            return Err(SynErr::auth_deny(
                "Unable to find cell user: log in with user:passwd@ in the URL",
            ));
        };
        let me = self.clone();
        let found = tokio::task::spawn_blocking(move || {
            let user = me.auth.user_by_name(&creds.user);
            let ok = match (&user, &creds.passwd) {
                (Some(u), Some(p)) => me.auth.try_passwd(&u.iden, p),
                _ => false,
            };
            (ok, user, creds.user)
        })
        .await
        .map_err(|e| SynErr::new("SynErr", e.to_string()))?;
        match found {
            (true, Some(user), _) => Ok(user.iden),
            (_, _, name) => Err(SynErr::auth_deny("Invalid password").with("username", name)),
        }
    }

    /// Log in the user a verified client certificate names: the user whose name is the
    /// certificate's CN, else, for a CN `user@network`, the user `user`.
    fn cert_login(&self, cn: &str) -> SynResult<String> {
        let found = self.auth.user_by_name(cn).or_else(|| {
            cn.split_once('@')
                .and_then(|(name, _)| self.auth.user_by_name(name))
        });
        match found {
            Some(u) if !u.locked && !u.archived => Ok(u.iden),
            Some(u) => Err(SynErr::auth_deny(format!("User ({}) is locked.", u.name))
                .with("username", u.name.as_str())),
            None => Err(
                SynErr::auth_deny(format!("TLS client cert user not found: {cn}"))
                    .with("username", cn),
            ),
        }
    }

    fn apply_root_passwd(&self, passwd: Option<&str>) -> anyhow::Result<()> {
        let Some(passwd) = passwd else { return Ok(()) };
        let root = self
            .auth
            .user_by_name(auth::ROOT_USER)
            .context("the root user is missing")?;
        if !self.auth.try_passwd(&root.iden, passwd) {
            self.auth
                .set_passwd(&root.iden, Some(passwd))
                .map_err(|e| anyhow::anyhow!("setting root's password: {e}"))?;
            info!("root password set from auth-passwd");
        }
        Ok(())
    }
}

/// The telepath face of a service: authenticates, then builds the session API.
struct Gateway<S> {
    cell: Arc<Cell>,
    service: Arc<S>,
}

impl<S: Service> Shared for Gateway<S> {
    fn open(&self, hello: Hello) -> BoxFut<SynResult<Arc<dyn Api>>> {
        let cell = self.cell.clone();
        let service = self.service.clone();
        Box::pin(async move {
            let user = cell.login(&hello).await?;
            let session = Arc::new(CellApi::new(cell, user));
            service.api(session, &hello.path)
        })
    }
}

/// How often a running service frees the LMDB reader slots that dead processes left behind.
const READER_SWEEP: Duration = Duration::from_secs(1);

/// Every [`READER_SWEEP`], free the reader slots that processes which died inside a read
/// transaction (a live backup killed during its copy) left in this process's environments, so
/// that LMDB can go on reusing freed pages ([`crate::storage::clear_stale_readers`]).
fn spawn_reader_sweep() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(READER_SWEEP);
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(crate::storage::clear_stale_readers).await;
        }
    });
}

/// Run a service from its parsed subcommand until SIGTERM/SIGINT. Returns the exit code.
pub fn run<S: Service>(kind: &ServiceKind<S>, matches: &clap::ArgMatches) -> i32 {
    let Some(dirn) = matches.get_one::<PathBuf>("dir").cloned() else {
        eprintln!("syn {}: a service directory is required", kind.name);
        return 2;
    };
    let spec = kind.spec();
    let env = |k: &str| std::env::var(k).ok();
    let conf = match spec.load(&dirn, matches, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("syn {}: configuration error: {e}", kind.name);
            return 2;
        }
    };
    if let Err(e) = check_urls(&conf) {
        eprintln!("syn {}: configuration error: {e}", kind.name);
        return 2;
    }
    if matches.get_flag("check-config") {
        println!("configuration of {} is valid:", dirn.display());
        for line in conf.describe(&spec) {
            println!("  {line}");
        }
        return 0;
    }
    log::init(
        conf.str("log-format").unwrap_or("text"),
        conf.str("log-level").unwrap_or("info"),
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("syn {}: cannot start the async runtime: {e}", kind.name);
            return 1;
        }
    };
    let result = runtime.block_on(serve(kind, &dirn, conf, matches));
    // Give blocking LMDB work a moment to end; never hang the exit on it.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("syn {}: {e:#}", kind.name);
            if e.downcast_ref::<dir::DirError>()
                .is_some_and(|d| matches!(d, dir::DirError::Locked(_)))
            {
                11
            } else {
                1
            }
        }
    }
}

fn check_urls(conf: &Config) -> Result<(), String> {
    for url in conf.list("telepath") {
        TeleUrl::parse(url).map_err(|e| format!("telepath: {}", e.mesg()))?;
    }
    Ok(())
}

async fn serve<S: Service>(
    kind: &ServiceKind<S>,
    dirn: &Path,
    conf: Config,
    matches: &clap::ArgMatches,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let celldir = CellDir::open(dirn)?;
    notify::status("opening");
    let cell = Cell::open(celldir, kind.name, conf.clone())?;
    cell.apply_root_passwd(conf.str("auth-passwd"))?;
    let service = (kind.open)(cell.clone())?;

    let daemon = Daemon::new();
    let gateway: Arc<dyn Shared> = Arc::new(Gateway {
        cell: cell.clone(),
        service: service.clone(),
    });
    daemon.share("*", gateway.clone());
    for name in service.share_names() {
        daemon.share(name, gateway.clone());
    }
    daemon
        .listen_unix(&cell.dir().sock_path())
        .await
        .with_context(|| format!("listening on {}", cell.dir().sock_path().display()))?;
    let mut bound = Vec::new();
    let mut tls_listeners: Vec<Arc<TlsServer>> = Vec::new();
    for url in conf.list("telepath") {
        let parsed = TeleUrl::parse(url).map_err(|e| anyhow::anyhow!("{}", e.mesg()))?;
        let addr = match parsed.endpoint {
            Endpoint::Ssl { .. } => {
                let certdir = cell_certdir(&cell, &conf)
                    .with_context(|| format!("serving {}", parsed.redacted()))?;
                let tls = Arc::new(
                    TlsServer::load(&parsed, &certdir)
                        .with_context(|| format!("serving {}", parsed.redacted()))?,
                );
                let addr = daemon
                    .listen_tls(&parsed, tls.clone())
                    .await
                    .with_context(|| format!("listening on {}", parsed.redacted()))?;
                info!(url = %addr, certdir = %certdir.path().display(), hostnames = %tls.hostnames().join(","), "telepath listening");
                tls_listeners.push(tls);
                addr
            }
            _ => {
                let addr = daemon
                    .listen(&parsed)
                    .await
                    .with_context(|| format!("listening on {}", parsed.redacted()))?;
                info!(url = %addr, "telepath listening");
                addr
            }
        };
        bound.push(addr);
    }
    let status = format!(
        "serving {} {} on {}",
        kind.name,
        cell.iden(),
        bound.join(" ")
    );
    info!(dir = %cell.path().display(), iden = %cell.iden(), "{}", status);
    notify::ready(&status);
    if let Some(every) = notify::spawn_watchdog() {
        info!(?every, "systemd watchdog enabled");
    }
    spawn_reader_sweep();

    let mut background = service.clone().start();
    let (why, failure) = loop {
        tokio::select! {
            _ = sigterm.recv() => break ("SIGTERM", None),
            _ = sigint.recv() => break ("SIGINT", None),
            _ = sighup.recv() => reload(kind, &cell, &*service, matches, &tls_listeners),
            ended = async { background.as_mut().expect("guarded by the condition").await },
                if background.is_some() =>
            {
                background = None;
                match ended {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break ("failure", Some(e)),
                    Err(e) => break ("failure", Some(anyhow::anyhow!("a background task failed: {e}"))),
                }
            }
        }
    };
    match &failure {
        Some(e) => error!("{e:#}: stopping"),
        None => info!("{why}: stopping"),
    }
    notify::stopping(&format!("stopping ({why})"));
    let grace = Duration::from_secs(conf.int("shutdown-timeout").unwrap_or(10).max(0) as u64);
    daemon.shutdown(grace).await;
    service.close();
    if let Err(e) = cell.slab.sync() {
        warn!(error = %e, "final sync of the cell slab failed");
    }
    info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// The certdir of a cell's ssl:// listeners: its `certdir` option, else `$SYN_CERTDIR`, else
/// `DIR/certs`, else `~/.syn/certs`.
pub(crate) fn cell_certdir(cell: &Cell, conf: &Config) -> Result<CertDir, CertError> {
    CertDir::locate(conf.str("certdir").map(Path::new), Some(cell.path()))
}

/// Re-read every ssl:// listener's certificates; a listener whose new certificates are bad
/// keeps the old ones.
fn reload_certs(cell: &Cell, conf: &Config, listeners: &[Arc<TlsServer>]) {
    if listeners.is_empty() {
        return;
    }
    let certdir = match cell_certdir(cell, conf) {
        Ok(dir) => dir,
        Err(e) => {
            error!("reload: keeping the TLS certificates in use: {e}");
            return;
        }
    };
    for tls in listeners {
        match tls.reload(&certdir) {
            Ok(()) => {
                info!(url = tls.url(), certdir = %certdir.path().display(), "TLS certificates reloaded")
            }
            Err(e) => error!(
                url = tls.url(),
                "reload: keeping the TLS certificates in use: {e}"
            ),
        }
    }
}

fn reload<S: Service>(
    kind: &ServiceKind<S>,
    cell: &Arc<Cell>,
    service: &S,
    matches: &clap::ArgMatches,
    tls_listeners: &[Arc<TlsServer>],
) {
    notify::reloading();
    let env = |k: &str| std::env::var(k).ok();
    match kind.spec().load(cell.path(), matches, &env) {
        Ok(conf) => {
            let old = cell.conf();
            if old.list("telepath") != conf.list("telepath") {
                warn!("telepath listen URLs changed: restart the service to apply them");
            }
            log::logs().set_level(conf.str("log-level").unwrap_or("info"));
            if let Err(e) = cell.apply_root_passwd(conf.str("auth-passwd")) {
                error!("reload: {e:#}");
            }
            reload_certs(cell, &conf, tls_listeners);
            service.reload(&conf);
            *cell.conf.write().unwrap_or_else(|e| e.into_inner()) = conf;
            info!("configuration reloaded");
        }
        Err(e) => error!("reload refused, keeping the running configuration: {e}"),
    }
    notify::ready("serving (reloaded)");
}
