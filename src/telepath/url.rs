//! Telepath URLs as Synapse writes them.
//!
//! `scheme://[user[:passwd]@]host[:port][/path][?k=v&k2=v2]` for `tcp://` and `ssl://`;
//! `unix:///path/to/sock:share` and `cell://DIR:share` (the socket `DIR/sock`) for local links.
//! Query values are not percent-decoded (as in Synapse); user and password are.

use crate::error::SynErr;
use std::fmt;
use std::path::PathBuf;

/// The port a telepath URL means when it names none.
pub const DEFAULT_PORT: u16 = 27492;

/// Where a link goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Plain TCP.
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// TLS over TCP.
    Ssl {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// An AF_UNIX stream socket.
    Unix {
        /// The socket's path.
        path: PathBuf,
    },
}

/// A parsed telepath URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeleUrl {
    /// Where to connect or listen.
    pub endpoint: Endpoint,
    /// The user name, if the URL has one.
    pub user: Option<String>,
    /// The password, if the URL has one.
    pub passwd: Option<String>,
    /// The shared object and sub-path to ask for (`*` when the URL names none).
    pub share: String,
    /// Query parameters in order; a key without `=` has no value.
    pub query: Vec<(String, Option<String>)>,
}

impl TeleUrl {
    /// Parse a telepath URL, with one clear error for anything malformed.
    pub fn parse(url: &str) -> Result<TeleUrl, SynErr> {
        let bad = |why: &str| SynErr::new("BadUrl", format!("bad telepath URL {url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://..."))?;
        let scheme = scheme.to_ascii_lowercase();
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, parse_query(q)),
            None => (rest, Vec::new()),
        };
        match scheme.as_str() {
            "tcp" | "ssl" => {
                let (netloc, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                };
                let (user, passwd, hostport) = split_userinfo(netloc);
                let (host, port) = split_hostport(hostport).map_err(|e| bad(&e))?;
                if host.is_empty() {
                    return Err(bad("no host"));
                }
                let share = match path.trim_start_matches('/') {
                    "" => "*".to_owned(),
                    name => name.trim_end_matches('/').to_owned(),
                };
                let endpoint = if scheme == "tcp" {
                    Endpoint::Tcp { host, port }
                } else {
                    Endpoint::Ssl { host, port }
                };
                Ok(TeleUrl {
                    endpoint,
                    user,
                    passwd,
                    share,
                    query,
                })
            }
            "unix" | "cell" => {
                let (user, passwd, local) = match rest.split_once('@') {
                    Some((info, local)) if !info.contains('/') => {
                        let (u, p, _) = split_userinfo(&format!("{info}@"));
                        (u, p, local)
                    }
                    _ => (None, None, rest),
                };
                let (path, share) = match local.rsplit_once(':') {
                    Some((p, s)) if !s.contains('/') => (p, s.to_owned()),
                    _ => (local, "*".to_owned()),
                };
                if path.is_empty() {
                    return Err(bad("no path"));
                }
                let mut path = PathBuf::from(path);
                if scheme == "cell" {
                    path.push("sock");
                }
                Ok(TeleUrl {
                    endpoint: Endpoint::Unix { path },
                    user,
                    passwd,
                    share: if share.is_empty() { "*".into() } else { share },
                    query,
                })
            }
            other => Err(bad(&format!(
                "unsupported scheme {other:?} (use tcp, ssl, unix or cell)"
            ))),
        }
    }

    /// The value of query parameter `key`, if present with a value.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The same URL with another share path (`cortex/layer/<iden>`, or `*` for the service).
    pub fn with_share(&self, share: &str) -> TeleUrl {
        let mut url = self.clone();
        url.share = share.to_owned();
        url
    }

    /// The URL with any password replaced by `****`, for logs and messages.
    pub fn redacted(&self) -> String {
        Shown {
            url: self,
            passwd: false,
        }
        .to_string()
    }
}

impl fmt::Display for TeleUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown {
            url: self,
            passwd: true,
        }
        .fmt(f)
    }
}

/// A URL written out, with its password or with `****` in its place.
struct Shown<'a> {
    url: &'a TeleUrl,
    passwd: bool,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url;
        let userinfo = match (&url.user, &url.passwd) {
            (Some(u), Some(_)) if !self.passwd => format!("{}:****@", pct_encode(u)),
            (Some(u), Some(p)) => format!("{}:{}@", pct_encode(u), pct_encode(p)),
            (Some(u), None) => format!("{}@", pct_encode(u)),
            _ => String::new(),
        };
        match &url.endpoint {
            Endpoint::Tcp { host, port } | Endpoint::Ssl { host, port } => {
                let scheme = if matches!(url.endpoint, Endpoint::Tcp { .. }) {
                    "tcp"
                } else {
                    "ssl"
                };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                write!(f, "{scheme}://{userinfo}{host}:{port}/")?;
                if url.share != "*" {
                    write!(f, "{}", url.share)?;
                }
            }
            Endpoint::Unix { path } => {
                write!(f, "unix://{userinfo}{}:{}", path.display(), url.share)?;
            }
        }
        if !url.query.is_empty() {
            let q: Vec<String> = url
                .query
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect();
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

fn parse_query(q: &str) -> Vec<(String, Option<String>)> {
    q.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (part.to_owned(), None),
        })
        .collect()
}

/// Split `user:passwd@hostport` (the last `@` ends the user info, as passwords may hold `@`).
fn split_userinfo(netloc: &str) -> (Option<String>, Option<String>, &str) {
    match netloc.rsplit_once('@') {
        Some((info, hostport)) => match info.split_once(':') {
            Some((u, p)) => (Some(pct_decode(u)), Some(pct_decode(p)), hostport),
            None => (Some(pct_decode(info)), None, hostport),
        },
        None => (None, None, netloc),
    }
}

fn split_hostport(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in IPv6 address")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
    };
    Ok((host.to_owned(), port))
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (hex_digit(bytes.get(i + 1)), hex_digit(bytes.get(i + 2)))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: Option<&u8>) -> Option<u8> {
    (*b? as char).to_digit(16).map(|d| d as u8)
}

fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_with_user_share_and_query() {
        let u = TeleUrl::parse("TCP://visi:s%40cret@host.example:1234/cortex/layer/abc?x=1&flag")
            .unwrap();
        assert_eq!(
            u.endpoint,
            Endpoint::Tcp {
                host: "host.example".into(),
                port: 1234
            }
        );
        assert_eq!(u.user.as_deref(), Some("visi"));
        assert_eq!(u.passwd.as_deref(), Some("s@cret"));
        assert_eq!(u.share, "cortex/layer/abc");
        assert_eq!(u.param("x"), Some("1"));
        assert_eq!(u.query[1], ("flag".into(), None));
        assert_eq!(
            TeleUrl::parse(&u.to_string()).unwrap(),
            u,
            "display round-trips"
        );
        assert!(!u.redacted().contains("cret"));
        assert!(
            u.redacted()
                .starts_with("tcp://visi:****@host.example:1234/"),
            "{}",
            u.redacted()
        );
    }

    #[test]
    fn defaults_and_ipv6() {
        let u = TeleUrl::parse("ssl://[::1]/").unwrap();
        assert_eq!(
            u.endpoint,
            Endpoint::Ssl {
                host: "::1".into(),
                port: DEFAULT_PORT
            }
        );
        assert_eq!(u.share, "*");
    }

    #[test]
    fn unix_and_cell() {
        let u = TeleUrl::parse("unix:///run/syn/sock:cortex").unwrap();
        assert_eq!(
            u.endpoint,
            Endpoint::Unix {
                path: "/run/syn/sock".into()
            }
        );
        assert_eq!(u.share, "cortex");
        let c = TeleUrl::parse("cell://root@/var/lib/syn/core").unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint::Unix {
                path: "/var/lib/syn/core/sock".into()
            }
        );
        assert_eq!(c.user.as_deref(), Some("root"));
        assert_eq!(c.share, "*");
        let rel = TeleUrl::parse("cell://data/core:cortex").unwrap();
        assert_eq!(
            rel.endpoint,
            Endpoint::Unix {
                path: "data/core/sock".into()
            }
        );
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            "nope",
            "http://x:1/",
            "tcp://host:99999/",
            "tcp://:1/",
            "unix://",
        ] {
            let e = TeleUrl::parse(bad).unwrap_err();
            assert_eq!(e.name, "BadUrl", "{bad}");
            assert!(!e.mesg().contains('\n'));
        }
    }
}
