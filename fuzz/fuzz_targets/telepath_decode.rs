//! Feed arbitrary bytes to the msgpack decoder and to a telepath link reader: neither may
//! panic, hang or allocate without bound, and whatever decodes must re-encode and decode to
//! the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use syn::msgpack::{self, Value};
use syn::telepath::link;

fuzz_target!(|data: &[u8]| {
    if let Ok((value, used)) = msgpack::decode(data) {
        assert_eq!(msgpack::measure(data), Ok(used));
        let again = msgpack::decode_exact(&value.to_bytes()).expect("re-encoded value decodes");
        // NaN floats are the one value not equal to themselves.
        if !has_nan(&value) {
            assert_eq!(again, value);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let (a, mut b) = tokio::io::duplex(4096);
        let bytes = data.to_vec();
        let writer = async move {
            use tokio::io::AsyncWriteExt;
            let _ = b.write_all(&bytes).await;
            drop(b);
        };
        let reader = async move {
            let (mut rd, _wr) = link::split(Box::new(a));
            while let Ok(Some(m)) = rd.rx().await {
                let _ = link::parse_mesg(&m);
            }
        };
        tokio::join!(writer, reader);
    });
});

fn has_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::Array(a) => a.iter().any(has_nan),
        Value::Map(m) => m.iter().any(|(k, v)| has_nan(k) || has_nan(v)),
        _ => false,
    }
}
