//! A cortex that mirrors another: the `mirror` option names the leader's telepath URL.
//!
//! A mirror starts from a backup of its leader (`syn backup` of the leader, restored into the
//! mirror's directory): the same cell iden, the same layers, and each layer's edit log a
//! prefix of the leader's. For each of its layers it follows the leader's `syncNodeEdits2`
//! from its own next offset and appends every record at the same offset, applied as the
//! leader logged it ([`Layer::replicate`]): the two logs stay equal record for record, so the
//! mirror can be backed up, followed or promoted in the leader's place. A record whose offset
//! is not the mirror's next (`MirrorDesync`), a leader with another iden, or a leader that
//! refuses (no such layer, no permission) stops the service with one line; a lost link is
//! tried again, at 1 s and doubling to a minute.
//!
//! The users and roles (passwords included) follow the leader's `syncAuth`, when the mirror's
//! user is an admin there. While it mirrors, every change is refused with `IsReadOnly` (storm
//! edits, feeds, `storNodeEdits`, forks, merges, users and roles, model changes); lifts and
//! reads answer from its copy.
//! Removing the option and sending SIGHUP (or restarting) promotes it: it stops following
//! and takes writes.

use super::catalog::Catalog;
use super::layer::{Layer, LogEntry};
use crate::cell::auth::{Auth, decode_auth};
use crate::cell::{Cell, notify};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::client::{ClientOptions, Proxy};
use crate::telepath::url::{Endpoint, TeleUrl};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// The option naming the leader.
pub const MIRROR_OPT: &str = "mirror";

/// The first pause before trying the leader again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Records read ahead of the writes.
const READ_AHEAD: usize = 4096;
/// The most records appended in one transaction.
const BATCH: usize = 1024;
/// How often the leader's layers are compared with the mirror's.
const LAYER_CHECK: Duration = Duration::from_secs(60);

/// A running mirror: what it follows and how far each layer got.
pub struct Mirror {
    leader: TeleUrl,
    client: ClientOptions,
    /// This cortex's cell iden, which the leader's must equal.
    iden: String,
    catalog: Arc<Catalog>,
    /// The cell's users and roles, which become the leader's.
    auth: Arc<Auth>,
    stop: watch::Sender<bool>,
    /// Per layer iden: whether it has caught up with the leader since it (re)connected.
    caught_up: Mutex<BTreeMap<String, bool>>,
    /// Layers of the leader that this cortex does not have (made after its backup).
    unmirrored: Mutex<Vec<String>>,
}

impl Mirror {
    /// The mirror the cell's configuration asks for, if any. Its layers refuse changes from
    /// now on.
    pub fn configured(cell: &Cell, catalog: Arc<Catalog>) -> anyhow::Result<Option<Arc<Mirror>>> {
        let conf = cell.conf();
        let Some(text) = conf.str(MIRROR_OPT) else {
            return Ok(None);
        };
        let leader =
            TeleUrl::parse(text).map_err(|e| anyhow::anyhow!("{MIRROR_OPT}: {}", e.mesg()))?;
        let certdir = match leader.endpoint {
            Endpoint::Ssl { .. } => Some(
                crate::cell::cell_certdir(cell, &conf)
                    .map_err(|e| anyhow::anyhow!("{MIRROR_OPT}: {e}"))?
                    .path()
                    .to_path_buf(),
            ),
            _ => None,
        };
        let client = crate::telepath::tls::client_options(&leader, certdir.as_deref())
            .map_err(|e| anyhow::anyhow!("{MIRROR_OPT}: {e}"))?;
        catalog.set_read_only(Some(format!(
            "this cortex mirrors {}: make changes there",
            leader.redacted()
        )));
        let caught_up = catalog
            .layers()
            .iter()
            .map(|l| (l.iden().to_owned(), false))
            .collect();
        Ok(Some(Arc::new(Mirror {
            leader,
            client,
            iden: cell.iden().to_owned(),
            catalog,
            auth: cell.auth.clone(),
            stop: watch::Sender::new(false),
            caught_up: Mutex::new(caught_up),
            unmirrored: Mutex::new(Vec::new()),
        })))
    }

    /// The leader's URL with its password hidden.
    pub fn leader(&self) -> String {
        self.leader.redacted()
    }

    /// `getMirrorStatus()`: `{leader, layers: {iden: {offs, caughtup}}, unmirrored}`, where
    /// `offs` is the layer's next offset, `caughtup` whether it has reached the leader's since
    /// it last connected, and `unmirrored` the leader's layers this cortex does not have.
    pub fn status(&self) -> Value {
        let caught_up = self
            .caught_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let layers = self.catalog.layers();
        let layers = layers.iter().map(|layer| {
            let done = caught_up.get(layer.iden()).copied().unwrap_or(false);
            let info = Value::map([
                ("offs", Value::from(layer.next_offset())),
                ("caughtup", Value::from(done)),
            ]);
            (layer.iden().to_owned(), info)
        });
        let unmirrored = self
            .unmirrored
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|l| Value::from(l.as_str()))
            .collect();
        Value::map([
            ("leader", Value::from(self.leader())),
            ("layers", Value::map(layers)),
            ("unmirrored", Value::Array(unmirrored)),
        ])
    }

    /// Follow every layer until [`Mirror::stop`]; the first failure that waiting cannot mend
    /// ends it with that error.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let (failed, mut failure) = mpsc::channel::<SynErr>(1);
        for layer in self.catalog.layers() {
            let (mirror, failed) = (self.clone(), failed.clone());
            tokio::spawn(async move {
                if let Err(e) = mirror.follow(layer).await {
                    let _ = failed.send(e).await;
                }
            });
        }
        let mirror = self.clone();
        tokio::spawn(async move { mirror.follow_auth().await });
        let mirror = self.clone();
        tokio::spawn(async move { mirror.watch_layers().await });
        drop(failed);
        self.report();
        let mut stopped = self.stop.subscribe();
        tokio::select! {
            Some(err) = failure.recv() => {
                self.stop.send_replace(true);
                Err(anyhow::anyhow!("mirror of {}: {err}", self.leader()))
            }
            _ = stopped.wait_for(|s| *s) => Ok(()),
        }
    }

    /// Stop following (a promotion); the layers take changes again.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        self.catalog.set_read_only(None);
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleep for `pause`, or less if the mirror stops meanwhile.
    async fn pause(&self, pause: Duration) {
        let mut rx = self.stop.subscribe();
        let _ = tokio::time::timeout(pause, rx.wait_for(|s| *s)).await;
    }

    /// Follow one layer, reconnecting after lost links, until stopped or refused.
    async fn follow(&self, layer: Layer) -> SynResult<()> {
        let mut backoff = FIRST_BACKOFF;
        while !self.stopped() {
            match self.session(&layer, &mut backoff).await {
                Ok(()) => {}
                Err(e) if e.is_link_error() => {
                    self.set_caught_up(layer.iden(), false);
                    warn!(
                        layer = layer.iden(),
                        "mirror: cannot follow the leader {} ({}); trying again in {} s",
                        self.leader(),
                        e.mesg(),
                        backoff.as_secs()
                    );
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The leader's `share`, once the leader's iden (every share answers `getCellIden`) is
    /// checked to be this cell's.
    async fn open_leader(&self, share: &str) -> SynResult<Proxy> {
        let cell = Proxy::open_with(&self.leader.with_share(share), self.client.clone()).await?;
        let theirs = cell.call("getCellIden", Vec::new()).await?;
        if theirs.as_str() != Some(self.iden.as_str()) {
            return Err(SynErr::new(
                "BadConfValu",
                format!(
                    "the leader is cell {}, this cortex is {}: a mirror starts from a backup of \
                     its leader",
                    theirs.as_str().unwrap_or("?"),
                    self.iden
                ),
            ));
        }
        Ok(cell)
    }

    /// Keep the users and roles (passwords too) those of the leader, through its `syncAuth`,
    /// until stopped. A leader that refuses (the mirror's user is not an admin there) leaves
    /// them as they are, with a warning; a lost link is tried again.
    async fn follow_auth(&self) {
        let mut backoff = FIRST_BACKOFF;
        while !self.stopped() {
            let ended = self.auth_session(&mut backoff).await;
            match ended {
                Ok(()) => {}
                Err(e) if e.is_link_error() => {
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    warn!(
                        "mirror: users and roles are not mirrored: the leader {} refused: {e}",
                        self.leader()
                    );
                    return;
                }
            }
        }
    }

    /// Every [`LAYER_CHECK`], list the leader's layers (`$lib.layer.list()`) and warn of those
    /// this cortex does not have: they are not mirrored. Ends when stopped or refused.
    async fn watch_layers(&self) {
        while !self.stopped() {
            match self.leader_layers().await {
                Ok(theirs) => {
                    let ours: Vec<String> = self
                        .catalog
                        .layers()
                        .iter()
                        .map(|l| l.iden().to_owned())
                        .collect();
                    let missing: Vec<String> =
                        theirs.into_iter().filter(|l| !ours.contains(l)).collect();
                    let mut unmirrored = self
                        .unmirrored
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    for layer in missing.iter().filter(|l| !unmirrored.contains(l)) {
                        warn!(
                            layer = %layer,
                            "mirror: the leader has a layer this cortex does not (made after its \
                             backup?); it is not mirrored: start the mirror again from a new \
                             backup to include it"
                        );
                    }
                    *unmirrored = missing;
                }
                Err(e) if e.is_link_error() => {}
                Err(e) => {
                    warn!("mirror: cannot list the leader's layers: {e}");
                    return;
                }
            }
            self.pause(LAYER_CHECK).await;
        }
    }

    async fn leader_layers(&self) -> SynResult<Vec<String>> {
        let core = self.open_leader("cortex").await?;
        let list = core
            .call("callStorm", vec![Value::from("return($lib.layer.list())")])
            .await?;
        Ok(list
            .as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(|def| def.get("iden").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    async fn auth_session(&self, backoff: &mut Duration) -> SynResult<()> {
        let cell = self.open_leader("*").await?;
        let mut states = cell.genr("syncAuth", Vec::new(), Vec::new()).await?;
        *backoff = FIRST_BACKOFF;
        let mut stopped = self.stop.subscribe();
        loop {
            let item = tokio::select! {
                item = states.next() => item,
                _ = stopped.wait_for(|s| *s) => return Ok(()),
            };
            let Some(item) = item else {
                return Err(SynErr::new("LinkShutDown", "the leader ended syncAuth"));
            };
            let (users, roles) = decode_auth(&item?)?;
            let auth = self.auth.clone();
            let changed = tokio::task::spawn_blocking(move || auth.replace_all(users, roles))
                .await
                .map_err(|e| {
                    SynErr::new("StorageError", format!("mirror auth write failed: {e}"))
                })??;
            if changed {
                info!("mirror: users and roles are now the leader's");
            }
        }
    }

    /// One connection: check the leader's iden, then append its records until the link
    /// drops (an error) or the mirror stops (`Ok`).
    async fn session(&self, layer: &Layer, backoff: &mut Duration) -> SynResult<()> {
        // The cell first: a leader of another cell is named as such, not as one that lacks
        // the layer.
        self.open_leader("*").await?;
        let share = format!("cortex/layer/{}", layer.iden());
        let remote = Proxy::open_with(&self.leader.with_share(&share), self.client.clone()).await?;
        let leader_next = remote
            .call("getEditIndx", Vec::new())
            .await?
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let from = layer.next_offset();
        self.check_same_log(layer, &remote, from, leader_next)
            .await?;
        let mut records = remote
            .genr("syncNodeEdits2", vec![Value::from(from)], Vec::new())
            .await?;
        *backoff = FIRST_BACKOFF;
        info!(
            layer = layer.iden(),
            from,
            leader = leader_next,
            "mirror: following {}",
            self.leader()
        );
        // Reading runs ahead of the writes, so a batch takes whatever has arrived meanwhile.
        let (tx, mut rx) = mpsc::channel::<SynResult<Value>>(READ_AHEAD);
        let reader = tokio::spawn(async move {
            while let Some(item) = records.next().await {
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        let ended = self.append(layer, &mut rx, leader_next).await;
        reader.abort();
        ended
    }

    /// Refuse a leader whose log is not this layer's log continued: one shorter than ours, or
    /// whose record before our next differs from ours (a mirror written to after a promotion,
    /// or restored from another leader's backup of the same cell).
    async fn check_same_log(
        &self,
        layer: &Layer,
        remote: &Proxy,
        from: u64,
        leader_next: u64,
    ) -> SynResult<()> {
        let desync = |why: String| {
            SynErr::new(
                "MirrorDesync",
                format!(
                    "layer {}: {why}: start the mirror again from a new backup of the leader",
                    layer.iden()
                ),
            )
        };
        if from > leader_next {
            return Err(desync(format!(
                "this mirror has {from} records, more than the leader's {leader_next}"
            )));
        }
        let Some(last) = from.checked_sub(1) else {
            return Ok(());
        };
        let mut theirs = remote
            .genr(
                "syncNodeEdits2",
                vec![Value::from(last)],
                vec![("wait", Value::from(false))],
            )
            .await?;
        let theirs = match theirs.next().await {
            Some(item) => record(item?)?,
            None => return Err(desync(format!("the leader has no record {last}"))),
        };
        let reader = layer.clone();
        let ours = tokio::task::spawn_blocking(move || reader.edits_from(last)?.next().transpose())
            .await
            .map_err(|e| SynErr::new("StorageError", format!("reading the log failed: {e}")))??;
        match ours {
            Some(ours) if ours.to_value() == theirs.to_value() => Ok(()),
            _ => Err(desync(format!("record {last} differs from the leader's"))),
        }
    }

    /// Append what `rx` brings, batch by batch, until it ends (a lost link) or the mirror stops.
    async fn append(
        &self,
        layer: &Layer,
        rx: &mut mpsc::Receiver<SynResult<Value>>,
        leader_next: u64,
    ) -> SynResult<()> {
        let mut stopped = self.stop.subscribe();
        if layer.next_offset() >= leader_next {
            self.set_caught_up(layer.iden(), true);
        }
        loop {
            let first = tokio::select! {
                item = rx.recv() => item,
                _ = stopped.wait_for(|s| *s) => return Ok(()),
            };
            let Some(first) = first else {
                return Err(SynErr::new(
                    "LinkShutDown",
                    "the leader ended the stream of records",
                ));
            };
            let mut batch = vec![record(first?)?];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(record(item?)?),
                    Err(_) => break,
                }
            }
            // Flushed whenever the mirror has written all it was sent; meanwhile the layer's
            // own background flush bounds what a crash could take back (and the leader
            // sends it again).
            let idle = rx.is_empty();
            let writer = layer.clone();
            tokio::task::spawn_blocking(move || {
                writer.replicate(&batch, false)?;
                if idle { writer.make_durable() } else { Ok(()) }
            })
            .await
            .map_err(|e| SynErr::new("StorageError", format!("mirror write failed: {e}")))??;
            if layer.next_offset() >= leader_next {
                self.set_caught_up(layer.iden(), true);
            }
        }
    }

    fn set_caught_up(&self, iden: &str, now: bool) {
        let changed = {
            let mut caught_up = self
                .caught_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            caught_up.insert(iden.to_owned(), now) != Some(now)
        };
        if changed {
            if now {
                info!(layer = iden, "mirror: caught up with the leader");
            }
            self.report();
        }
    }

    /// Tell systemd how far the mirror is.
    fn report(&self) {
        let (done, total) = {
            let caught_up = self
                .caught_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (caught_up.values().filter(|c| **c).count(), caught_up.len())
        };
        notify::status(&format!(
            "mirroring {}: {done} of {total} layers caught up",
            self.leader()
        ));
    }
}

/// A record as `syncNodeEdits2` sends it.
fn record(item: Value) -> SynResult<LogEntry> {
    LogEntry::from_value(&item).map_err(|e| {
        SynErr::new(
            "BadMesgFormat",
            format!("the leader sent a record that cannot be read: {e}"),
        )
    })
}
