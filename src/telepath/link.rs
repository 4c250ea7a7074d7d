//! A telepath link: a byte stream carrying back-to-back msgpack messages, no length prefix.
//!
//! Every message is a two-element array `(type, info)`. The reader buffers bytes until a whole
//! value has arrived, bounded by [`MAX_MESSAGE`]; the writer encodes into a reusable buffer and
//! can batch several messages before one flush.

use crate::error::SynErr;
use crate::msgpack::{self, DecodeError, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// The largest message a link accepts before it is closed (256 MiB).
pub const MAX_MESSAGE: usize = 256 << 20;

/// Anything a link can run over: TCP, TLS or a unix socket.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed link stream.
pub type BoxStream = Box<dyn Stream>;

/// Why a link stopped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed.
    #[error("link I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not msgpack.
    #[error("malformed message: {0}")]
    Malformed(DecodeError),
    /// The peer sent a message over [`MAX_MESSAGE`].
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// The peer closed the link while a call was running.
    #[error("the peer closed the link")]
    Closed,
    /// The peer closed the link in the middle of a message.
    #[error("link closed in the middle of a message")]
    Truncated,
}

impl From<LinkError> for SynErr {
    fn from(e: LinkError) -> Self {
        SynErr::new("LinkErr", e.to_string())
    }
}

/// Split a stream into its reading and writing halves.
pub fn split(stream: BoxStream) -> (LinkReader, LinkWriter) {
    let (rd, wr) = tokio::io::split(stream);
    (
        LinkReader {
            rd,
            buf: Vec::with_capacity(8192),
            start: 0,
            eof: false,
        },
        LinkWriter {
            wr,
            buf: Vec::with_capacity(8192),
        },
    )
}

/// The receiving half of a link.
pub struct LinkReader {
    rd: ReadHalf<BoxStream>,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl LinkReader {
    /// The next message, or `None` when the peer closed the link cleanly between messages.
    /// Cancel-safe: bytes read before a cancellation stay buffered.
    pub async fn rx(&mut self) -> Result<Option<Value>, LinkError> {
        loop {
            if let Some(value) = self.try_take()? {
                return Ok(Some(value));
            }
            if self.eof {
                return if self.start == self.buf.len() {
                    Ok(None)
                } else {
                    Err(LinkError::Truncated)
                };
            }
            self.fill().await?;
        }
    }

    /// Read more bytes into the buffer; returns `false` once the peer has closed its side.
    /// Cancel-safe. Used to notice a vanished client while a call runs.
    pub async fn fill(&mut self) -> Result<bool, LinkError> {
        if self.eof {
            return Ok(false);
        }
        if self.buf.len() - self.start > MAX_MESSAGE {
            return Err(LinkError::TooLarge);
        }
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(65536);
        let n = self.rd.read_buf(&mut self.buf).await?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n != 0)
    }

    /// Whether a whole or partial message is waiting in the buffer.
    pub fn has_buffered(&self) -> bool {
        self.start < self.buf.len()
    }

    fn try_take(&mut self) -> Result<Option<Value>, LinkError> {
        let pending = &self.buf[self.start..];
        if pending.is_empty() {
            return Ok(None);
        }
        // Small messages: decode straight away. Large ones: measure first, so a message
        // arriving in many reads is not rebuilt each time.
        let result = if pending.len() > 65536 {
            msgpack::measure(pending).and_then(|n| msgpack::decode(&pending[..n]))
        } else {
            msgpack::decode(pending)
        };
        match result {
            Ok((value, used)) => {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(value))
            }
            Err(DecodeError::Incomplete) if pending.len() > MAX_MESSAGE => Err(LinkError::TooLarge),
            Err(DecodeError::Incomplete) => Ok(None),
            Err(e) => Err(LinkError::Malformed(e)),
        }
    }
}

/// The sending half of a link.
pub struct LinkWriter {
    wr: WriteHalf<BoxStream>,
    buf: Vec<u8>,
}

impl LinkWriter {
    /// Send one message now.
    pub async fn tx(&mut self, mesg: &Value) -> Result<(), LinkError> {
        self.queue(mesg);
        self.flush().await
    }

    /// Encode a message into the send buffer without sending it yet.
    pub fn queue(&mut self, mesg: &Value) {
        msgpack::encode(mesg, &mut self.buf);
    }

    /// Queue `("t2:yield", {"retn": (True, item)})`, the item written by `item`.
    pub fn queue_yield_with(&mut self, item: impl FnOnce(&mut Vec<u8>)) {
        let out = &mut self.buf;
        msgpack::write_array_len(2, out);
        msgpack::write_str("t2:yield", out);
        msgpack::write_map_len(1, out);
        msgpack::write_str("retn", out);
        msgpack::write_array_len(2, out);
        msgpack::encode(&Value::Bool(true), out);
        item(out);
    }

    /// Bytes queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Send everything queued.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.wr.flush().await?;
        Ok(())
    }

    /// Close the writing side.
    pub async fn shutdown(&mut self) {
        let _ = self.wr.shutdown().await;
    }
}

/// Build the message `(kind, {key: value, ...})`.
pub fn mesg<'a>(kind: &str, info: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Array(vec![Value::from(kind), Value::map(info)])
}

/// Split a message into its type and info map, or `None` if it is not `(str, map)`.
pub fn parse_mesg(mesg: &Value) -> Option<(&str, &Value)> {
    match mesg.as_array()? {
        [Value::Str(kind), info @ Value::Map(_)] => Some((kind, info)),
        _ => None,
    }
}

/// Take the value of `key` out of the info of a message `(kind, info)`.
pub fn take_info(mesg: &mut Value, key: &str) -> Option<Value> {
    match mesg {
        Value::Array(parts) => parts.get_mut(1)?.take(key),
        _ => None,
    }
}

/// A `retn` pair: `(True, value)` or `(False, (name, info))`.
pub fn retn(result: Result<Value, &SynErr>) -> Value {
    match result {
        Ok(v) => Value::Array(vec![Value::Bool(true), v]),
        Err(e) => Value::Array(vec![Value::Bool(false), e.to_value()]),
    }
}

/// Unpack a `retn` pair into a result.
pub fn unretn(retn: Value) -> Result<Value, SynErr> {
    match retn {
        Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
            Ok([Value::Bool(true), v]) => Ok(v),
            Ok([Value::Bool(false), e]) => Err(SynErr::from_value(&e)),
            Ok(pair) => Err(malformed_retn(&Value::Array(pair.into()))),
            Err(items) => Err(malformed_retn(&Value::Array(items))),
        },
        other => Err(malformed_retn(&other)),
    }
}

fn malformed_retn(retn: &Value) -> SynErr {
    SynErr::new("BadMesgFormat", format!("malformed retn: {retn}"))
}

/// Set Synapse's socket options on a TCP stream: no Nagle delay, keepalive 3 s / 3 s / 5 probes.
pub fn tune_tcp(sock: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = sock.set_nodelay(true);
    let _ = setsockopt(sock, sockopt::KeepAlive, &true);
    let _ = setsockopt(sock, sockopt::TcpKeepIdle, &3);
    let _ = setsockopt(sock, sockopt::TcpKeepInterval, &3);
    let _ = setsockopt(sock, sockopt::TcpKeepCount, &5);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_survive_arbitrary_chunking() {
        let (a, b) = tokio::io::duplex(7);
        let (mut rd, _w) = split(Box::new(a));
        let (_r, mut wr) = split(Box::new(b));
        let msgs: Vec<Value> = (0..50)
            .map(|i| {
                mesg(
                    "t2:yield",
                    [("retn", retn(Ok(Value::Str("x".repeat(i * 7)))))],
                )
            })
            .collect();
        let sent = msgs.clone();
        tokio::spawn(async move {
            for m in &sent {
                wr.queue(m);
            }
            wr.flush().await.unwrap();
            wr.shutdown().await;
        });
        for m in &msgs {
            assert_eq!(rd.rx().await.unwrap().as_ref(), Some(m));
        }
        assert!(rd.rx().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn garbage_and_truncation_are_errors() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut rd, _w) = split(Box::new(a));
        b.write_all(&[0x92, 0xc1]).await.unwrap();
        assert!(matches!(rd.rx().await, Err(LinkError::Malformed(_))));

        let (a, mut b) = tokio::io::duplex(64);
        let (mut rd, _w) = split(Box::new(a));
        b.write_all(&[0x92, 0xa1]).await.unwrap();
        drop(b);
        assert!(matches!(rd.rx().await, Err(LinkError::Truncated)));
    }

    #[test]
    fn retn_round_trip() {
        assert_eq!(unretn(retn(Ok(Value::Int(3)))), Ok(Value::Int(3)));
        let e = SynErr::auth_deny("no");
        assert_eq!(unretn(retn(Err(&e))), Err(e));
        assert_eq!(unretn(Value::Nil).unwrap_err().name, "BadMesgFormat");
        let three = Value::Array(vec![Value::Bool(true), Value::Nil, Value::Nil]);
        assert_eq!(unretn(three).unwrap_err().name, "BadMesgFormat");
        let mut yielded = mesg("t2:yield", [("retn", retn(Ok(Value::Int(4))))]);
        assert_eq!(
            take_info(&mut yielded, "retn").map(unretn),
            Some(Ok(Value::Int(4)))
        );
        assert_eq!(take_info(&mut yielded, "retn"), Some(Value::Nil));
        assert_eq!(take_info(&mut yielded, "nope"), None);
    }
}
