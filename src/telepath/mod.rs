//! Telepath, Synapse's RPC protocol: URLs, links, the server (daemon) and the client (proxy).
//!
//! Byte-compatible with Python Synapse's telepath 3.x: a bare stream of msgpack messages,
//! the `tele:syn` handshake, task-v2 calls on pooled links, generators and shares. This module
//! knows nothing of any service; services describe their APIs with [`api::Methods`].

pub mod api;
pub mod client;
pub mod link;
pub mod server;
pub mod tls;
pub mod url;

pub use api::{Api, Args, Genr, HasMethods, Methods, Packed, Reply, Stream, Yield};
pub use client::{ClientOptions, GenrStream, Proxy, TlsConnect};
pub use server::{Credentials, Daemon, Hello, Peer, Shared, TlsAccept};
pub use tls::{TlsClient, TlsError, TlsServer, client_options};
pub use url::TeleUrl;
