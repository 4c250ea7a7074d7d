//! Telepath server and client on real sockets: calls, generators, shares, cancellation, and
//! bad input that must close only the offending link.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use syn::error::{SynErr, SynResult};
use syn::msgpack::{self, Value};
use syn::telepath::api::BoxFut;
use syn::telepath::link::{mesg, parse_mesg};
use syn::telepath::{
    Api, Daemon, HasMethods, Hello, Methods, Packed, Proxy, Shared, TeleUrl, Yield,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How many items the endless generator has produced, to see it stop when abandoned.
static PRODUCED: AtomicUsize = AtomicUsize::new(0);

struct Echo {
    user: Option<String>,
}

/// `{"n": i}`, written as msgpack by the item itself.
struct SelfEncoded(i64);

impl Packed for SelfEncoded {
    fn encode(&self, out: &mut Vec<u8>) {
        msgpack::write_map_len(1, out);
        msgpack::write_str("n", out);
        msgpack::write_int(self.0.into(), out);
    }
}

struct Counter {
    n: AtomicUsize,
}

static ECHO: LazyLock<Methods<Echo>> = LazyLock::new(|| {
    Methods::<Echo>::new("test.Echo")
        .call("echo", |_api, mut args| async move {
            let v: Value = args.req(0, "valu")?;
            args.done()?;
            Ok(v)
        })
        .call("whoami", |api, args| async move {
            args.done()?;
            Ok(Value::from(api.user.clone()))
        })
        .call("boom", |_api, _args| async move {
            Err::<Value, _>(SynErr::new("BadTypeValu", "no good").with("valu", 3i64))
        })
        .call("panics", |_api, _args| async move {
            if PRODUCED.load(Ordering::SeqCst) < usize::MAX {
                panic!("handler bug");
            }
            Ok(Value::Nil)
        })
        .genr("range", |_api, mut args| async move {
            let n: i64 = args.req(0, "n")?;
            let fail_at: Option<i64> = args.opt(1, "fail_at")?;
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(async move {
                for i in 0..n {
                    if Some(i) == fail_at {
                        let _ = tx
                            .send(Err(SynErr::new("StormRuntimeError", "failed")))
                            .await;
                        return;
                    }
                    if tx.send(Ok(Value::from(i))).await.is_err() {
                        return;
                    }
                }
            });
            Ok(rx)
        })
        .stream("mixed", |_api, mut args| async move {
            // Values and items that encode themselves, alternately, then an error.
            let n: i64 = args.req(0, "n")?;
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(async move {
                for i in 0..n {
                    let item = if i % 2 == 0 {
                        Yield::Value(Value::map([("n", Value::from(i))]))
                    } else {
                        Yield::Packed(Box::new(SelfEncoded(i)))
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Err(SynErr::new("BadArg", "done"))).await;
            });
            Ok(rx)
        })
        .genr("paced", |_api, mut args| async move {
            // Like `range`, from a blocking thread that pauses now and then: a busy producer
            // that never fills its channel, whose items the server sends in batches.
            let n: i64 = args.req(0, "n")?;
            let fail_at: Option<i64> = args.opt(1, "fail_at")?;
            let (tx, rx) = mpsc::channel(1024);
            tokio::task::spawn_blocking(move || {
                for i in 0..n {
                    if i % 16 == 0 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    let item = if Some(i) == fail_at {
                        Err(SynErr::new("StormRuntimeError", "failed"))
                    } else {
                        Ok(Value::from(i))
                    };
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        return;
                    }
                }
            });
            Ok(rx)
        })
        .genr("forever", |_api, mut args| async move {
            // Only the abandonment test counts what it produces (tests share this process).
            let counted = args.opt::<bool>(0, "counted")?.unwrap_or(false);
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                loop {
                    if tx.send(Ok(Value::from("tick"))).await.is_err() {
                        return;
                    }
                    if counted {
                        PRODUCED.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            Ok(rx)
        })
        .share("counter", |_api, _args| async move {
            let c: Arc<dyn Api> = Arc::new(Counter {
                n: AtomicUsize::new(0),
            });
            Ok(c)
        })
        .build()
});

static COUNTER: LazyLock<Methods<Counter>> = LazyLock::new(|| {
    Methods::<Counter>::new("test.Counter")
        .call("incr", |api, _args| async move {
            Ok(Value::from(api.n.fetch_add(1, Ordering::SeqCst) + 1))
        })
        .build()
});

impl HasMethods for Echo {
    fn methods() -> &'static Methods<Self> {
        &ECHO
    }
}
impl HasMethods for Counter {
    fn methods() -> &'static Methods<Self> {
        &COUNTER
    }
}

struct EchoShare;

impl Shared for EchoShare {
    fn open(&self, hello: Hello) -> BoxFut<SynResult<Arc<dyn Api>>> {
        Box::pin(async move {
            if let Some(a) = &hello.auth
                && a.passwd.as_deref() != Some("secret")
            {
                return Err(SynErr::auth_deny("Invalid password"));
            }
            let api: Arc<dyn Api> = Arc::new(Echo {
                user: hello.auth.map(|a| a.user),
            });
            Ok(api)
        })
    }
}

async fn start() -> (Daemon, String, tempfile::TempDir) {
    let daemon = Daemon::new();
    daemon.share("*", Arc::new(EchoShare));
    daemon.share("echo", Arc::new(EchoShare));
    let addr = daemon
        .listen(&TeleUrl::parse("tcp://127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    daemon.listen_unix(&tmp.path().join("sock")).await.unwrap();
    let port = addr
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    (daemon, port, tmp)
}

#[tokio::test]
async fn calls_generators_and_errors_over_tcp_and_unix() {
    let (_d, port, tmp) = start().await;
    let tcp = Proxy::open(&format!("tcp://visi:secret@127.0.0.1:{port}/echo"))
        .await
        .unwrap();
    let unix = Proxy::open(&format!(
        "unix://{}:echo",
        tmp.path().join("sock").display()
    ))
    .await
    .unwrap();
    assert!(tcp.is_genr("range") && !tcp.is_genr("echo"));
    let classes = tcp.sharinfo().get("classes").unwrap();
    assert_eq!(classes, &Value::Array(vec!["test.Echo".into()]));

    let tricky = Value::Map(vec![
        (Value::Int(1), Value::Bin(vec![0, 255])),
        (
            Value::Array(vec!["a".into()]),
            Value::RawStr(vec![0xed, 0xa0, 0x80]),
        ),
        ("big".into(), Value::Int(u64::MAX as i128)),
        ("f".into(), Value::Float(0.1)),
    ]);
    for proxy in [&tcp, &unix] {
        assert_eq!(
            proxy.call("echo", vec![tricky.clone()]).await.unwrap(),
            tricky
        );
    }
    assert_eq!(
        tcp.call("whoami", vec![]).await.unwrap(),
        Value::from("visi")
    );
    assert_eq!(unix.call("whoami", vec![]).await.unwrap(), Value::Nil);

    let mut genr = tcp.genr("range", vec![5i64.into()], vec![]).await.unwrap();
    let mut got = vec![];
    while let Some(item) = genr.next().await {
        got.push(item.unwrap().as_i64().unwrap());
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    // An empty generator still answers t2:genr and ends cleanly.
    assert_eq!(
        tcp.call("range", vec![0i64.into()]).await.unwrap(),
        Value::Array(vec![])
    );
    // A generator that fails mid-way delivers its items, then the error.
    let mut genr = tcp
        .genr("range", vec![5i64.into(), 2i64.into()], vec![])
        .await
        .unwrap();
    assert_eq!(genr.next().await.unwrap().unwrap(), Value::from(0i64));
    assert_eq!(genr.next().await.unwrap().unwrap(), Value::from(1i64));
    assert_eq!(
        genr.next().await.unwrap().unwrap_err().name,
        "StormRuntimeError"
    );

    // A stream's self-encoding items arrive as the values they encode, in order.
    assert!(tcp.is_genr("mixed"));
    let mut genr = tcp.genr("mixed", vec![4i64.into()], vec![]).await.unwrap();
    for i in 0..4i64 {
        let item = genr.next().await.unwrap().unwrap();
        assert_eq!(item, Value::map([("n", Value::from(i))]));
    }
    assert_eq!(genr.next().await.unwrap().unwrap_err().name, "BadArg");
    assert!(genr.next().await.is_none());

    // Long generators (sent in batches once the producer proves busy) arrive whole and in
    // order, and one failing late still ends with its error after every item before it.
    let mut genr = tcp
        .genr("paced", vec![20_000i64.into()], vec![])
        .await
        .unwrap();
    let mut got = vec![];
    while let Some(item) = genr.next().await {
        got.push(item.unwrap().as_i64().unwrap());
    }
    assert_eq!(got, (0..20_000).collect::<Vec<_>>());
    let mut genr = tcp
        .genr("paced", vec![20_000i64.into(), 15_000i64.into()], vec![])
        .await
        .unwrap();
    let mut got = 0;
    let end = loop {
        match genr.next().await {
            Some(Ok(v)) => {
                assert_eq!(v.as_i64(), Some(got));
                got += 1;
            }
            other => break other,
        }
    };
    assert_eq!(got, 15_000);
    assert_eq!(end.unwrap().unwrap_err().name, "StormRuntimeError");
    assert!(genr.next().await.is_none());

    let e = tcp.call("boom", vec![]).await.unwrap_err();
    assert_eq!((e.name.as_str(), e.mesg()), ("BadTypeValu", "no good"));
    assert_eq!(e.field("valu"), Some(&Value::from(3i64)));
    assert_eq!(
        tcp.call("nope", vec![]).await.unwrap_err().name,
        "NoSuchMeth"
    );
    assert_eq!(
        tcp.call("_private", vec![]).await.unwrap_err().name,
        "NoSuchMeth"
    );
    assert_eq!(tcp.call("echo", vec![]).await.unwrap_err().name, "BadArg");
    let e = tcp.call("panics", vec![]).await.unwrap_err();
    assert_eq!(e.name, "SynErr");
    // The proxy still works after all of that.
    assert_eq!(
        tcp.call("echo", vec![1i64.into()]).await.unwrap(),
        Value::from(1i64)
    );
}

#[tokio::test]
async fn handshake_failures() {
    let (_d, port, _tmp) = start().await;
    let e = Proxy::open(&format!("tcp://visi:wrong@127.0.0.1:{port}/"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.name, "AuthDeny");
    let e = Proxy::open(&format!("tcp://127.0.0.1:{port}/nosuch"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.name, "NoSuchName");
    let e = Proxy::open("tcp://127.0.0.1:1/").await.err().unwrap();
    assert_eq!(e.name, "LinkErr");
}

#[tokio::test]
async fn shares_live_in_the_session() {
    let (_d, port, _tmp) = start().await;
    let proxy = Proxy::open(&format!("tcp://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let iden = match proxy.start(None, "counter", vec![], vec![]).await.unwrap() {
        syn::telepath::client::Answer::Share(iden, info) => {
            assert!(info.get("meths").unwrap().get("incr").is_some());
            iden
        }
        _ => panic!("expected a share"),
    };
    for want in 1..=3i64 {
        match proxy
            .start(Some(&iden), "incr", vec![], vec![])
            .await
            .unwrap()
        {
            syn::telepath::client::Answer::Value(v) => assert_eq!(v, Value::from(want)),
            _ => panic!("expected a value"),
        }
    }
    proxy.fini_share(&iden).await.unwrap();
    // share:fini is asynchronous; the share disappears shortly.
    let mut gone = false;
    for _ in 0..50 {
        match proxy.start(Some(&iden), "incr", vec![], vec![]).await {
            Err(e) if e.name == "NoSuchObj" => {
                gone = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(gone, "the share was not finalized");
}

#[tokio::test]
async fn an_abandoned_generator_stops_its_producer() {
    let (_d, port, _tmp) = start().await;
    let proxy = Proxy::open(&format!("tcp://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let mut genr = proxy
        .genr("forever", vec![Value::Bool(true)], vec![])
        .await
        .unwrap();
    for _ in 0..10 {
        genr.next().await.unwrap().unwrap();
    }
    drop(genr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = PRODUCED.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        PRODUCED.load(Ordering::SeqCst),
        after_drop,
        "producer kept running"
    );
}

async fn raw_link(port: &str) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap()
}

async fn read_one(sock: &mut tokio::net::TcpStream) -> Option<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok((v, _)) = msgpack::decode(&buf) {
            return Some(v);
        }
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn bad_input_closes_only_that_link() {
    let (_d, port, _tmp) = start().await;
    let good = Proxy::open(&format!("tcp://127.0.0.1:{port}/"))
        .await
        .unwrap();

    // Garbage bytes: the link is closed without an answer.
    let mut sock = raw_link(&port).await;
    sock.write_all(&[0xc1, 0xc1, 0xc1]).await.unwrap();
    assert!(read_one(&mut sock).await.is_none());

    // An unknown message type closes the link.
    let mut sock = raw_link(&port).await;
    sock.write_all(&mesg("no:such", []).to_bytes())
        .await
        .unwrap();
    assert!(read_one(&mut sock).await.is_none());

    // A message that claims to be huge is refused once it passes the limit.
    let mut sock = raw_link(&port).await;
    let mut huge = vec![0xc6];
    huge.extend_from_slice(&(u32::MAX).to_be_bytes());
    sock.write_all(&huge).await.unwrap();
    let junk = vec![0u8; 1 << 20];
    let mut closed = false;
    for _ in 0..400 {
        if sock.write_all(&junk).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "an oversized message was accepted");

    // A call with an unknown session gets NoSuchObj, and the link stays usable.
    let mut sock = raw_link(&port).await;
    let init = mesg(
        "t2:init",
        [
            (
                "todo",
                Value::Array(vec![
                    "echo".into(),
                    Value::Array(vec![1i64.into()]),
                    Value::Map(vec![]),
                ]),
            ),
            ("name", Value::Nil),
            ("sess", "f".repeat(32).into()),
        ],
    );
    sock.write_all(&init.to_bytes()).await.unwrap();
    let reply = read_one(&mut sock).await.unwrap();
    let (kind, info) = parse_mesg(&reply).unwrap();
    assert_eq!(kind, "t2:fini");
    let err = SynErr::from_value(&info.get("retn").unwrap().as_array().unwrap()[1]);
    assert_eq!(err.name, "NoSuchObj");

    // A wrong protocol version is refused with BadMesgVers.
    let mut sock = raw_link(&port).await;
    let syn_msg = mesg(
        "tele:syn",
        [
            ("auth", Value::Nil),
            ("vers", Value::Array(vec![2i64.into(), 0i64.into()])),
            ("name", "*".into()),
        ],
    );
    sock.write_all(&syn_msg.to_bytes()).await.unwrap();
    let reply = read_one(&mut sock).await.unwrap();
    let retn = parse_mesg(&reply).unwrap().1.get("retn").unwrap().clone();
    assert_eq!(
        SynErr::from_value(&retn.as_array().unwrap()[1]).name,
        "BadMesgVers"
    );

    // The well-behaved client never noticed.
    assert_eq!(
        good.call("echo", vec![7i64.into()]).await.unwrap(),
        Value::from(7i64)
    );
}

#[tokio::test]
async fn shutdown_lets_calls_finish_then_cancels() {
    let (daemon, port, _tmp) = start().await;
    let proxy = Proxy::open(&format!("tcp://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let mut genr = proxy.genr("forever", vec![], vec![]).await.unwrap();
    genr.next().await.unwrap().unwrap();
    let started = std::time::Instant::now();
    daemon.shutdown(Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stream ends (with an error) rather than hanging: once the items sent before the
    // cancel are read (how many depends on the machine's speed), the next answer is the end.
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(_)) = genr.next().await {}
    })
    .await;
    assert!(drained.is_ok(), "the generator never ended");
    assert!(
        Proxy::open(&format!("tcp://127.0.0.1:{port}/"))
            .await
            .is_err()
    );
}
