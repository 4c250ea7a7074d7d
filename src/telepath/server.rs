//! The telepath server (Synapse's Daemon): listeners, sessions, and task-v2 calls.
//!
//! A client opens a main link and sends `tele:syn`; the shared object it names authenticates
//! it and returns the session's API. Calls then arrive as `t2:init` on pooled links that carry
//! only the session iden. Each link is its own task: a bad message closes that link and no
//! other; a panicking handler becomes an error reply.

use super::api::{Api, BoxFut, Reply, Yield};
use super::link::{self, BoxStream, LinkError, LinkReader, LinkWriter, mesg, parse_mesg, retn};
use super::url::{Endpoint, TeleUrl};
use crate::error::{SynErr, SynResult};
use crate::guid;
use crate::msgpack::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// The telepath protocol version; only the major number must match.
pub const TELEVERS: (i64, i64) = (3, 0);

/// A generator's items are sent as they come for this many turns in a row; after that its
/// producer is treated as busy and its items are collected for [`GENR_LINGER`] at a time and
/// sent in one write (unless they fill the channel first). Short generators (a few items,
/// then the end) never wait.
const GENR_EAGER_WAKES: u32 = 4;

/// How long the items of a busy generator are collected before they are sent: each write
/// and each wake-up of this task then serves many items instead of one.
const GENR_LINGER: Duration = Duration::from_millis(1);

/// Who is on the other end of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The local unix socket: whoever reaches it is trusted.
    Unix,
    /// A TCP client.
    Tcp {
        /// The client's address.
        addr: String,
    },
    /// A TLS client, with the common name of its verified certificate if it showed one.
    Tls {
        /// The client's address.
        addr: String,
        /// Common name of the verified client certificate.
        cert_cn: Option<String>,
    },
}

/// Credentials a client offered in its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password, if one was sent.
    pub passwd: Option<String>,
}

/// What a shared object learns when a client asks for it.
#[derive(Clone, Debug)]
pub struct Hello {
    /// Credentials from the URL, if any.
    pub auth: Option<Credentials>,
    /// The sub-path after the share name (`cortex/layer/<iden>` gives `["layer", iden]`).
    pub path: Vec<String>,
    /// Who connected.
    pub peer: Peer,
}

/// An object the daemon shares by name: it authenticates a client and hands out its API.
pub trait Shared: Send + Sync + 'static {
    /// Authenticate `hello` and return the API object for the new session.
    fn open(&self, hello: Hello) -> BoxFut<SynResult<Arc<dyn Api>>>;
}

struct Session {
    api: Arc<dyn Api>,
    shares: Mutex<HashMap<String, Arc<dyn Api>>>,
}

struct Inner {
    shared: RwLock<HashMap<String, Arc<dyn Shared>>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Stop accepting; idle links close.
    stopping: CancellationToken,
    /// Cancel calls still running after the grace period.
    aborting: CancellationToken,
    tracker: TaskTracker,
}

/// A telepath server. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl Default for Daemon {
    fn default() -> Self {
        Self::new()
    }
}

impl Daemon {
    /// A daemon sharing nothing yet.
    pub fn new() -> Self {
        Daemon {
            inner: Arc::new(Inner {
                shared: RwLock::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                stopping: CancellationToken::new(),
                aborting: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Share `item` under `name` (`*` is what a URL without a path asks for).
    pub fn share(&self, name: &str, item: Arc<dyn Shared>) {
        self.inner
            .shared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), item);
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Listen on a `tcp://` or `unix://` URL and return the address actually bound (with the
    /// real port when the URL asked for port 0). `ssl://` listeners are set up by
    /// [`Daemon::listen_tls`].
    pub async fn listen(&self, url: &TeleUrl) -> std::io::Result<String> {
        match &url.endpoint {
            Endpoint::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port)).await?;
                let addr = listener.local_addr()?;
                self.spawn_accept_tcp(listener, None);
                Ok(format!("tcp://{addr}/"))
            }
            Endpoint::Unix { path } => {
                self.listen_unix(path).await?;
                Ok(format!("unix://{}", path.display()))
            }
            Endpoint::Ssl { .. } => Err(std::io::Error::other(
                "ssl:// listeners need a TLS configuration",
            )),
        }
    }

    /// Listen for TLS on `url`'s host and port; `tls` is consulted for every new connection,
    /// so swapping its contents reloads certificates without touching open links.
    pub async fn listen_tls(
        &self,
        url: &TeleUrl,
        tls: Arc<dyn TlsAccept>,
    ) -> std::io::Result<String> {
        let Endpoint::Ssl { host, port } = &url.endpoint else {
            return Err(std::io::Error::other("listen_tls needs an ssl:// URL"));
        };
        let listener = TcpListener::bind((host.as_str(), *port)).await?;
        let addr = listener.local_addr()?;
        self.spawn_accept_tcp(listener, Some(tls));
        Ok(format!("ssl://{addr}/"))
    }

    /// Listen on a unix socket at `path`, replacing a stale socket file left by a dead process.
    pub async fn listen_unix(&self, path: &Path) -> std::io::Result<()> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let me = self.clone();
        let path: PathBuf = path.to_owned();
        self.inner.tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = me.inner.stopping.cancelled() => break,
                    res = listener.accept() => match res {
                        Ok((sock, _)) => me.serve(Box::new(sock), Peer::Unix),
                        Err(e) => {
                            warn!(error = %e, "unix accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                }
            }
            let _ = std::fs::remove_file(&path);
        });
        Ok(())
    }

    fn spawn_accept_tcp(&self, listener: TcpListener, tls: Option<Arc<dyn TlsAccept>>) {
        let me = self.clone();
        self.inner.tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = me.inner.stopping.cancelled() => break,
                    res = listener.accept() => res,
                };
                let (sock, addr) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                link::tune_tcp(&sock);
                let addr = addr.to_string();
                match &tls {
                    None => me.serve(Box::new(sock), Peer::Tcp { addr }),
                    Some(tls) => {
                        let fut = tls.accept(sock);
                        let me2 = me.clone();
                        me.inner.tracker.spawn(async move {
                            match tokio::time::timeout(Duration::from_secs(30), fut).await {
                                Ok(Ok((stream, cert_cn))) => {
                                    me2.serve(stream, Peer::Tls { addr, cert_cn })
                                }
                                Ok(Err(e)) => info!(%addr, error = %e, "TLS handshake refused"),
                                Err(_) => info!(%addr, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
    }

    /// Serve one already-connected stream.
    pub fn serve(&self, stream: BoxStream, peer: Peer) {
        let me = self.clone();
        let aborting = self.inner.aborting.clone();
        self.inner.tracker.spawn(async move {
            tokio::select! {
                _ = me.serve_link(stream, peer) => {}
                _ = aborting.cancelled() => {}
            }
        });
    }

    /// Stop: no new connections, idle links close at once, calls in flight get `grace` to
    /// finish and are then cancelled. Returns when every link task has ended.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            warn!("calls still running after {grace:?}; cancelling them");
            self.inner.aborting.cancel();
            self.inner.tracker.wait().await;
        }
        self.sessions().clear();
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn serve_link(&self, stream: BoxStream, peer: Peer) {
        let (mut rd, mut wr) = link::split(stream);
        let mut own_sess: Option<String> = None;
        loop {
            let next = tokio::select! {
                _ = self.inner.stopping.cancelled(), if !rd.has_buffered() => break,
                next = rd.rx() => next,
            };
            let mesg_val = match next {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    debug!(?peer, error = %e, "closing link");
                    break;
                }
            };
            let Some((kind, info)) = parse_mesg(&mesg_val) else {
                debug!(?peer, "closing link: message is not (type, info)");
                break;
            };
            let ok = match kind {
                "tele:syn" if own_sess.is_none() => {
                    let (reply, sess) = self.handshake(info, &peer).await;
                    own_sess = sess;
                    wr.tx(&reply).await.is_ok()
                }
                "t2:init" => self.t2_call(info, &mut rd, &mut wr).await.is_ok(),
                "share:fini" => {
                    self.share_fini(own_sess.as_deref(), info);
                    true
                }
                other => {
                    debug!(?peer, kind = other, "closing link: unexpected message type");
                    false
                }
            };
            if !ok {
                break;
            }
        }
        if let Some(iden) = own_sess {
            self.sessions().remove(&iden);
        }
        wr.shutdown().await;
    }

    async fn handshake(&self, info: &Value, peer: &Peer) -> (Value, Option<String>) {
        let vers = Value::Array(vec![TELEVERS.0.into(), TELEVERS.1.into()]);
        match self.open_session(info, peer).await {
            Ok((iden, sharinfo)) => {
                let reply = mesg(
                    "tele:syn",
                    [
                        ("vers", vers),
                        ("retn", retn(Ok(Value::Nil))),
                        ("features", Value::Map(vec![])),
                        ("sharinfo", sharinfo),
                        ("sess", Value::from(iden.as_str())),
                    ],
                );
                (reply, Some(iden))
            }
            Err(e) => {
                info!(?peer, error = %e, "handshake refused");
                (
                    mesg("tele:syn", [("vers", vers), ("retn", retn(Err(&e)))]),
                    None,
                )
            }
        }
    }

    async fn open_session(&self, info: &Value, peer: &Peer) -> SynResult<(String, Value)> {
        let major = info
            .get("vers")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
            .and_then(Value::as_i64);
        if major != Some(TELEVERS.0) {
            return Err(SynErr::new(
                "BadMesgVers",
                format!("telepath version mismatch: we speak {}.x", TELEVERS.0),
            ));
        }
        let full = match info.get("name") {
            Some(Value::Str(s)) if !s.is_empty() => s.as_str(),
            _ => "*",
        };
        let (name, path) = match full.split_once('/') {
            Some((n, rest)) => (
                n,
                rest.split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => (full, Vec::new()),
        };
        let item = self
            .inner
            .shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| {
                SynErr::new("NoSuchName", format!("no shared object named {name:?}"))
                    .with("name", name)
            })?;
        let auth = parse_auth(info.get("auth"))?;
        let api = item
            .open(Hello {
                auth,
                path,
                peer: peer.clone(),
            })
            .await?;
        let sharinfo = api.sharinfo();
        let iden = guid::guid();
        self.sessions().insert(
            iden.clone(),
            Arc::new(Session {
                api,
                shares: Mutex::new(HashMap::new()),
            }),
        );
        Ok((iden, sharinfo))
    }

    fn share_fini(&self, sess: Option<&str>, info: &Value) {
        let (Some(sess), Some(share)) = (sess, info.get("share").and_then(Value::as_str)) else {
            return;
        };
        if let Some(s) = self.sessions().get(sess) {
            s.shares
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(share);
        }
    }

    /// Resolve and run one `t2:init`, answering on this link. An `Err` means the link is gone.
    async fn t2_call(
        &self,
        info: &Value,
        rd: &mut LinkReader,
        wr: &mut LinkWriter,
    ) -> Result<(), LinkError> {
        let (session, fut) = match self.resolve_call(info) {
            Ok(found) => found,
            Err(e) => return wr.tx(&fini(Err(&e))).await,
        };
        // Run the call on this link's task (no hop to another task); a client that closes
        // the link drops, and so cancels, the call.
        // Biased: a call that is ready at once answers without first probing the socket.
        let outcome = tokio::select! {
            biased;
            res = CatchUnwind(fut) => res,
            gone = wait_closed(rd) => return gone,
        };
        let reply = outcome.unwrap_or_else(|_| {
            warn!("a method panicked; answering with an error");
            Err(SynErr::new("SynErr", "internal error in method"))
        });
        match reply {
            Ok(Reply::Value(v)) => wr.tx(&fini(Ok(v))).await,
            Err(e) => wr.tx(&fini(Err(&e))).await,
            Ok(Reply::Share(api)) => {
                let iden = guid::guid();
                let sharinfo = api.sharinfo();
                session
                    .shares
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(iden.clone(), api);
                wr.tx(&mesg(
                    "t2:share",
                    [("iden", Value::from(iden)), ("sharinfo", sharinfo)],
                ))
                .await
            }
            Ok(Reply::Genr(items)) => serve_genr(items, rd, wr).await,
            Ok(Reply::Stream(items)) => serve_genr(items, rd, wr).await,
        }
    }

    fn resolve_call(&self, info: &Value) -> SynResult<(Arc<Session>, BoxFut<SynResult<Reply>>)> {
        let bad = || SynErr::new("BadMesgFormat", "t2:init needs todo (meth, args, kwargs)");
        let (meth, args, kwargs) = match info.get("todo").and_then(Value::as_array) {
            Some([Value::Str(m), Value::Array(a), Value::Map(k)]) => (m, a, k),
            _ => return Err(bad()),
        };
        let sess_iden = info.get("sess").and_then(Value::as_str).unwrap_or("");
        let session =
            self.sessions().get(sess_iden).cloned().ok_or_else(|| {
                SynErr::new("NoSuchObj", "no such session").with("sess", sess_iden)
            })?;
        let api = match info.get("name") {
            None | Some(Value::Nil) => session.api.clone(),
            Some(Value::Str(share)) => session
                .shares
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(share)
                .cloned()
                .ok_or_else(|| {
                    SynErr::new("NoSuchObj", format!("no shared object {share:?}"))
                        .with("name", share.as_str())
                })?,
            Some(_) => return Err(bad()),
        };
        if meth.starts_with('_') {
            return Err(SynErr::no_such_meth(meth));
        }
        let args = super::api::Args::from_wire(args.clone(), kwargs.clone())?;
        let fut = api
            .call(meth, args)
            .ok_or_else(|| SynErr::no_such_meth(meth))?;
        Ok((session, fut))
    }
}

/// Send a generator's items as `t2:yield` messages until it ends, fails or the link closes.
async fn serve_genr<T: Yielded>(
    mut items: mpsc::Receiver<SynResult<T>>,
    rd: &mut LinkReader,
    wr: &mut LinkWriter,
) -> Result<(), LinkError> {
    wr.queue(&mesg("t2:genr", []));
    // The item that woke this task, if it waited for one.
    let mut woken = None;
    // How many turns in a row found items ready.
    let mut streak = 0;
    loop {
        // Everything the producer has ready goes out in one write.
        let mut taken = 0;
        let finished = loop {
            let item = match woken.take().unwrap_or_else(|| items.try_recv()) {
                Ok(item) => item,
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => {
                    wr.queue(&mesg("t2:yield", [("retn", Value::Nil)]));
                    break true;
                }
            };
            taken += 1;
            match item {
                Ok(v) => v.queue_yield(wr),
                Err(e) => {
                    wr.queue(&mesg("t2:yield", [("retn", retn(Err(&e)))]));
                    break true;
                }
            }
            if wr.queued() >= 1 << 16 {
                wr.flush().await?;
            }
        };
        wr.flush().await?;
        if finished {
            return Ok(());
        }
        streak = if taken == 0 { 0 } else { streak + 1 };
        // A full channel means a producer waiting for room: no pause then.
        if streak > GENR_EAGER_WAKES && taken < items.max_capacity() {
            // A busy producer: give it time to fill the next batch. Its sends in
            // the meantime wake nobody, since nothing waits on the channel.
            tokio::select! {
                biased;
                () = tokio::time::sleep(GENR_LINGER) => {}
                gone = wait_closed(rd) => return gone,
            }
        } else {
            // An idle producer, whose next item goes out as soon as it comes, or
            // one that waits for room in the channel.
            tokio::select! {
                biased;
                item = items.recv() => {
                    woken = Some(item.ok_or(TryRecvError::Disconnected));
                }
                gone = wait_closed(rd) => return gone,
            }
        }
    }
}

/// What a generator's channel carries: written as the `retn` of a `t2:yield`.
trait Yielded: Send {
    fn queue_yield(self, wr: &mut LinkWriter);
}

impl Yielded for Value {
    fn queue_yield(self, wr: &mut LinkWriter) {
        wr.queue(&mesg("t2:yield", [("retn", retn(Ok(self)))]));
    }
}

impl Yielded for Yield {
    fn queue_yield(self, wr: &mut LinkWriter) {
        match self {
            Yield::Value(v) => v.queue_yield(wr),
            Yield::Packed(item) => wr.queue_yield_with(|out| item.encode(out)),
        }
    }
}

/// Accepts TLS on a TCP stream, giving the stream and the verified client certificate's CN.
pub trait TlsAccept: Send + Sync + 'static {
    /// Run the TLS handshake.
    fn accept(
        &self,
        sock: tokio::net::TcpStream,
    ) -> BoxFut<std::io::Result<(BoxStream, Option<String>)>>;
}

fn fini(result: Result<Value, &SynErr>) -> Value {
    mesg("t2:fini", [("retn", retn(result))])
}

fn parse_auth(auth: Option<&Value>) -> SynResult<Option<Credentials>> {
    match auth {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Array(pair)) => match pair.as_slice() {
            [Value::Str(user), info] => Ok(Some(Credentials {
                user: user.clone(),
                passwd: info
                    .get("passwd")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })),
            _ => Err(SynErr::new(
                "BadMesgFormat",
                "auth must be (user, {passwd})",
            )),
        },
        Some(_) => Err(SynErr::new(
            "BadMesgFormat",
            "auth must be (user, {passwd})",
        )),
    }
}

/// Polls a call, turning a panic inside it into an `Err` instead of unwinding the link task.
struct CatchUnwind(BoxFut<SynResult<Reply>>);

impl std::future::Future for CatchUnwind {
    type Output = Result<SynResult<Reply>, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// Resolves when the client closes its side (the way it cancels a generator).
async fn wait_closed(rd: &mut LinkReader) -> Result<(), LinkError> {
    loop {
        if !rd.fill().await? {
            return Err(LinkError::Closed);
        }
    }
}
