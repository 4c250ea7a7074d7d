//! The client side of a backup hold: ask the running service, through its unix socket, to
//! pause writes for the instant a snapshot takes to begin (`backupHold` of the Cell API).

use super::Failure;
use crate::cell::dir::SOCK_FILE;
use crate::msgpack::Value;
use crate::telepath::client::GenrStream;
use crate::telepath::url::Endpoint;
use crate::telepath::{ClientOptions, Proxy, TeleUrl};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long to wait for the socket of a service that is starting.
const SOCKET_WAIT: Duration = Duration::from_secs(30);

/// What the service said about the snapshot point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HoldPoint {
    /// The service's iden.
    pub iden: String,
    /// The service type.
    pub kind: String,
    /// When the hold was taken, epoch milliseconds.
    pub time_ms: i64,
    /// Environments the service has open for writing, relative to its directory.
    pub envs: Vec<String>,
    /// Append-only logs and their durable lengths, relative paths.
    pub logs: Vec<(String, u64)>,
}

/// A hold in place: writes of the service are paused until [`LiveHold::release`].
pub(super) struct LiveHold {
    // Field order: the links close before their runtime goes.
    genr: GenrStream,
    proxy: Proxy,
    runtime: tokio::runtime::Runtime,
    asked: Instant,
    granted: Instant,
    timeout: Duration,
}

impl LiveHold {
    /// Connect to `SRCDIR/sock` and take the hold for at most `timeout`.
    pub(super) fn take(src: &Path, timeout: Duration) -> Result<(LiveHold, HoldPoint), Failure> {
        let sock = src.join(SOCK_FILE);
        let fail = |what: String| {
            Failure::failed(format!(
                "cannot hold the running service's writes through {}: {what}",
                sock.display()
            ))
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let url = TeleUrl {
            endpoint: Endpoint::Unix { path: sock.clone() },
            user: None,
            passwd: None,
            share: "*".into(),
            query: Vec::new(),
        };
        let opts = ClientOptions {
            connect_timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        };
        let (proxy, genr, first, asked) = runtime.block_on(async {
            // A service that is starting holds its lock before its socket listens.
            let give_up = Instant::now() + SOCKET_WAIT;
            let proxy = loop {
                match Proxy::open_with(&url, opts.clone()).await {
                    Ok(proxy) => break proxy,
                    Err(e) if e.name == "LinkErr" && Instant::now() < give_up => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(fail(e.to_string())),
                }
            };
            // The service's timeout starts after this moment.
            let asked = Instant::now();
            let mut genr = proxy
                .genr(
                    "backupHold",
                    vec![Value::Float(timeout.as_secs_f64())],
                    Vec::new(),
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
            let first = match genr.next().await {
                Some(Ok(item)) => item,
                Some(Err(e)) => return Err(fail(e.to_string())),
                None => return Err(fail("the service ended the hold at once".into())),
            };
            Ok((proxy, genr, first, asked))
        })?;
        let granted = Instant::now();
        let point = parse_point(&first).ok_or_else(|| fail("unexpected answer".into()))?;
        let hold = LiveHold {
            genr,
            proxy,
            runtime,
            asked,
            granted,
            timeout,
        };
        Ok((hold, point))
    }

    /// End the hold. Fails if the service may have let writes resume before now (its timeout
    /// runs from after the request was sent, so a release within the timeout of sending it is
    /// always in time). Returns how long writes were held (from the answer to the release).
    pub(super) fn release(self) -> Result<Duration, Failure> {
        let LiveHold {
            genr,
            proxy,
            runtime,
            asked,
            granted,
            timeout,
        } = self;
        let since_asked = asked.elapsed();
        let held = granted.elapsed();
        // Closing the generator's link is what tells the service to let writes go.
        runtime.block_on(async move {
            drop(genr);
            drop(proxy);
        });
        if since_asked >= timeout {
            return Err(Failure::failed(format!(
                "the snapshot did not begin within the service's hold ({}ms); \
                 try a larger --hold-timeout",
                timeout.as_millis()
            )));
        }
        Ok(held)
    }
}

fn parse_point(item: &Value) -> Option<HoldPoint> {
    let strings = |key: &str| -> Option<Vec<String>> {
        item.get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let logs = item
        .get("logs")?
        .as_array()?
        .iter()
        .map(|pair| match pair.as_array()? {
            [path, len] => Some((
                path.as_str()?.to_owned(),
                u64::try_from(len.as_i64()?).ok()?,
            )),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(HoldPoint {
        iden: item.get("iden")?.as_str()?.to_owned(),
        kind: item.get("type")?.as_str()?.to_owned(),
        time_ms: item.get("time")?.as_i64()?,
        envs: strings("envs")?,
        logs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_hold_item() {
        let item = Value::map([
            ("iden", Value::from("ab")),
            ("type", Value::from("cortex")),
            ("time", Value::from(5i64)),
            ("waited", Value::from(0i64)),
            ("envs", Value::Array(vec![Value::from("slabs/cell.lmdb")])),
            (
                "logs",
                Value::Array(vec![Value::Array(vec![
                    Value::from("edits.log"),
                    Value::from(12i64),
                ])]),
            ),
        ]);
        let point = parse_point(&item).unwrap();
        assert_eq!(point.envs, vec!["slabs/cell.lmdb"]);
        assert_eq!(point.logs, vec![("edits.log".to_owned(), 12)]);
        assert_eq!(parse_point(&Value::Nil), None);
    }
}
