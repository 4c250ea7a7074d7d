//! The telepath client (Synapse's Proxy): one main link for the session, a pool of call links.
//!
//! `Proxy::open` sends `tele:syn` on the main link and keeps it open (it carries `share:fini`
//! and tells the server the session is alive). Calls go out as `t2:init` on pooled links that
//! carry only the session iden; a link goes back to the pool after a complete answer and is
//! closed if a generator is abandoned, which is how the server learns to stop it.

use super::api::BoxFut;
use super::link::{self, BoxStream, LinkReader, LinkWriter, mesg, parse_mesg, take_info, unretn};
use super::server::TELEVERS;
use super::url::{Endpoint, TeleUrl};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpStream, UnixStream};

/// Idle call links kept per proxy.
const POOL_SIZE: usize = 8;

/// Wraps a TCP stream in TLS for an `ssl://` URL.
pub trait TlsConnect: Send + Sync + 'static {
    /// Run the client side of the TLS handshake.
    fn connect(&self, sock: TcpStream) -> BoxFut<std::io::Result<BoxStream>>;
}

/// How a proxy connects.
#[derive(Clone)]
pub struct ClientOptions {
    /// TLS for `ssl://` URLs.
    pub tls: Option<Arc<dyn TlsConnect>>,
    /// Limit on connecting and on the handshake.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls: None,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

type Link = (LinkReader, LinkWriter);

struct Inner {
    url: TeleUrl,
    opts: ClientOptions,
    sess: String,
    sharinfo: Value,
    pool: Mutex<Vec<Link>>,
    main: tokio::sync::Mutex<LinkWriter>,
    main_reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.main_reader.abort();
    }
}

/// A connection to a shared object on a telepath server. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

/// The answer to a call: a value, a stream of values, or a new shared object.
pub enum Answer {
    /// `t2:fini` with a value.
    Value(Value),
    /// `t2:genr`: read the items from the stream.
    Genr(GenrStream),
    /// `t2:share`: the share's iden and sharinfo.
    Share(String, Value),
}

impl Proxy {
    /// Connect to `url` with default options; an `ssl://` URL gets its TLS settings from the
    /// default certdir (`$SYN_CERTDIR`, else `~/.syn/certs`).
    pub async fn open(url: &str) -> SynResult<Proxy> {
        let url = TeleUrl::parse(url)?;
        let opts = super::tls::client_options(&url, None)?;
        Proxy::open_with(&url, opts).await
    }

    /// Connect to `url` and run the handshake; credentials come from the URL.
    pub async fn open_with(url: &TeleUrl, opts: ClientOptions) -> SynResult<Proxy> {
        let (mut rd, mut wr) = connect(url, &opts).await?;
        let auth = match &url.user {
            Some(user) => Value::Array(vec![
                Value::from(user.as_str()),
                Value::map([("passwd", Value::from(url.passwd.clone()))]),
            ]),
            None => Value::Nil,
        };
        let syn = mesg(
            "tele:syn",
            [
                ("auth", auth),
                (
                    "vers",
                    Value::Array(vec![TELEVERS.0.into(), TELEVERS.1.into()]),
                ),
                ("name", Value::from(url.share.as_str())),
            ],
        );
        let link_err = |e: link::LinkError| {
            SynErr::new(
                "LinkErr",
                format!("handshake with {} failed: {e}", url.redacted()),
            )
        };
        wr.tx(&syn).await.map_err(link_err)?;
        let reply = tokio::time::timeout(opts.connect_timeout, rd.rx())
            .await
            .map_err(|_| {
                SynErr::new(
                    "TimeOut",
                    format!("no handshake answer from {}", url.redacted()),
                )
            })?
            .map_err(link_err)?
            .ok_or_else(|| {
                SynErr::new(
                    "LinkShutDown",
                    format!("{} closed the link during the handshake", url.redacted()),
                )
            })?;
        let info = match parse_mesg(&reply) {
            Some(("tele:syn", info)) => info,
            _ => return Err(SynErr::new("BadMesgFormat", "unexpected handshake answer")),
        };
        let major = info
            .get("vers")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
            .and_then(Value::as_i64);
        if major != Some(TELEVERS.0) {
            return Err(SynErr::new(
                "BadMesgVers",
                "the server speaks another telepath version",
            ));
        }
        unretn(info.get("retn").cloned().unwrap_or_default())?;
        let sess = info
            .get("sess")
            .and_then(Value::as_str)
            .ok_or_else(|| SynErr::new("BadMesgFormat", "handshake answer has no session"))?
            .to_owned();
        let sharinfo = info.get("sharinfo").cloned().unwrap_or(Value::Nil);
        // The main link stays open for the session; the server may send share:fini on it.
        let main_reader = tokio::spawn(async move { while let Ok(Some(_)) = rd.rx().await {} });
        Ok(Proxy {
            inner: Arc::new(Inner {
                url: url.clone(),
                opts,
                sess,
                sharinfo,
                pool: Mutex::new(Vec::new()),
                main: tokio::sync::Mutex::new(wr),
                main_reader,
            }),
        })
    }

    /// The session iden the server gave.
    pub fn session(&self) -> &str {
        &self.inner.sess
    }

    /// The server's description of the shared object.
    pub fn sharinfo(&self) -> &Value {
        &self.inner.sharinfo
    }

    /// Whether the server marks `meth` as a generator.
    pub fn is_genr(&self, meth: &str) -> bool {
        self.inner
            .sharinfo
            .get("meths")
            .and_then(|m| m.get(meth))
            .and_then(|m| m.get("genr"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Call a method that returns one value; a generator's items are collected into a list.
    pub async fn call(&self, meth: &str, args: Vec<Value>) -> SynResult<Value> {
        self.call_kw(meth, args, Vec::new()).await
    }

    /// Call with keyword arguments too.
    pub async fn call_kw(
        &self,
        meth: &str,
        args: Vec<Value>,
        kwargs: Vec<(&str, Value)>,
    ) -> SynResult<Value> {
        match self.start(None, meth, args, kwargs).await? {
            Answer::Value(v) => Ok(v),
            Answer::Genr(mut genr) => {
                let mut items = Vec::new();
                while let Some(item) = genr.next().await {
                    items.push(item?);
                }
                Ok(Value::Array(items))
            }
            Answer::Share(iden, _) => Ok(Value::from(iden)),
        }
    }

    /// Call a generator method and stream its items.
    pub async fn genr(
        &self,
        meth: &str,
        args: Vec<Value>,
        kwargs: Vec<(&str, Value)>,
    ) -> SynResult<GenrStream> {
        match self.start(None, meth, args, kwargs).await? {
            Answer::Genr(genr) => Ok(genr),
            Answer::Value(_) | Answer::Share(..) => Err(SynErr::new(
                "BadMesgFormat",
                format!("{meth} is not a generator"),
            )),
        }
    }

    /// Send `t2:init` for `meth` on `share` (`None` for the main object) and read the answer.
    pub async fn start(
        &self,
        share: Option<&str>,
        meth: &str,
        args: Vec<Value>,
        kwargs: Vec<(&str, Value)>,
    ) -> SynResult<Answer> {
        let todo = Value::Array(vec![
            Value::from(meth),
            Value::Array(args),
            Value::map(kwargs),
        ]);
        let init = mesg(
            "t2:init",
            [
                ("todo", todo),
                ("name", Value::from(share)),
                ("sess", Value::from(self.inner.sess.as_str())),
            ],
        );
        let (mut rd, mut wr) = self.take_link().await?;
        let lost = |e: link::LinkError| SynErr::new("LinkErr", format!("call {meth} failed: {e}"));
        wr.tx(&init).await.map_err(lost)?;
        let reply = rd.rx().await.map_err(lost)?.ok_or_else(|| {
            SynErr::new(
                "LinkShutDown",
                format!("the server closed the link during {meth}"),
            )
        })?;
        let mut reply = reply;
        match parse_mesg(&reply) {
            Some(("t2:fini", _)) => {
                let result = unretn(take_info(&mut reply, "retn").unwrap_or_default());
                self.put_link((rd, wr));
                result.map(Answer::Value)
            }
            Some(("t2:genr", _)) => Ok(Answer::Genr(GenrStream {
                proxy: self.clone(),
                link: Some((rd, wr)),
            })),
            Some(("t2:share", info)) => {
                self.put_link((rd, wr));
                let iden = info
                    .get("iden")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Ok(Answer::Share(
                    iden,
                    info.get("sharinfo").cloned().unwrap_or(Value::Nil),
                ))
            }
            _ => Err(SynErr::new(
                "BadMesgFormat",
                format!("unexpected answer to {meth}"),
            )),
        }
    }

    /// Tell the server a share is no longer needed.
    pub async fn fini_share(&self, iden: &str) -> SynResult<()> {
        let m = mesg("share:fini", [("share", Value::from(iden))]);
        self.inner.main.lock().await.tx(&m).await?;
        Ok(())
    }

    async fn take_link(&self) -> SynResult<Link> {
        let pooled = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match pooled {
            Some(link) => Ok(link),
            None => connect(&self.inner.url, &self.inner.opts).await,
        }
    }

    fn put_link(&self, link: Link) {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(link);
        }
    }
}

/// The items of a remote generator. Dropping it before the end closes its link, which is how
/// the server learns to stop producing.
pub struct GenrStream {
    proxy: Proxy,
    link: Option<Link>,
}

impl GenrStream {
    /// The next item, or `None` after the last.
    pub async fn next(&mut self) -> Option<SynResult<Value>> {
        let (rd, _) = self.link.as_mut()?;
        let mut mesg_val = match rd.rx().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.link = None;
                return Some(Err(SynErr::new(
                    "LinkShutDown",
                    "the server closed the link during a generator",
                )));
            }
            Err(e) => {
                self.link = None;
                return Some(Err(e.into()));
            }
        };
        match parse_mesg(&mesg_val) {
            Some(("t2:yield", _)) => match take_info(&mut mesg_val, "retn") {
                None | Some(Value::Nil) => {
                    if let Some(link) = self.link.take() {
                        self.proxy.put_link(link);
                    }
                    None
                }
                Some(r) => {
                    let item = unretn(r);
                    if item.is_err() {
                        self.link = None;
                    }
                    Some(item)
                }
            },
            _ => {
                self.link = None;
                Some(Err(SynErr::new(
                    "BadMesgFormat",
                    "unexpected message in a generator",
                )))
            }
        }
    }
}

async fn connect(url: &TeleUrl, opts: &ClientOptions) -> SynResult<Link> {
    let fail = |e: std::io::Error| {
        SynErr::new(
            "LinkErr",
            format!("cannot connect to {}: {e}", url.redacted()),
        )
    };
    let work = async {
        let stream: BoxStream = match &url.endpoint {
            Endpoint::Tcp { host, port } => {
                let sock = TcpStream::connect((host.as_str(), *port)).await?;
                link::tune_tcp(&sock);
                Box::new(sock)
            }
            Endpoint::Ssl { host, port } => {
                let tls = opts.tls.clone().ok_or_else(|| {
                    std::io::Error::other("ssl:// needs TLS settings (a certdir)")
                })?;
                let sock = TcpStream::connect((host.as_str(), *port)).await?;
                link::tune_tcp(&sock);
                tls.connect(sock).await?
            }
            Endpoint::Unix { path } => Box::new(UnixStream::connect(path).await?),
        };
        Ok::<_, std::io::Error>(stream)
    };
    let stream = tokio::time::timeout(opts.connect_timeout, work)
        .await
        .map_err(|_| {
            SynErr::new(
                "TimeOut",
                format!("connecting to {} timed out", url.redacted()),
            )
        })?
        .map_err(fail)?;
    Ok(link::split(stream))
}
