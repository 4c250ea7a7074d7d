//! `readlines` and `jsonlines`: a stored file read as UTF-8 text, line by line, as Synapse's
//! axon reads it (Python's text mode): `\n`, `\r\n` and a lone `\r` each end a line, a line
//! comes without its ending, and the text after the last ending is a line of its own.
//! Undecodable bytes are dropped (`errors='ignore'`, the default), replaced by U+FFFD
//! (`'replace'`) or refused with BadDataValu (`'strict'`).

use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::Genr;
use tokio::sync::mpsc;

/// What to do with bytes that are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Errors {
    Ignore,
    Replace,
    Strict,
}

impl Errors {
    /// The `errors` argument of `readlines` and `jsonlines`.
    pub(super) fn parse(name: &str) -> SynResult<Errors> {
        match name {
            "ignore" => Ok(Errors::Ignore),
            "replace" => Ok(Errors::Replace),
            "strict" => Ok(Errors::Strict),
            other => Err(SynErr::bad_arg(format!(
                "errors must be ignore, replace or strict, not {other:?}"
            ))
            .with("errors", other)),
        }
    }
}

/// Splits a stream of bytes into lines, whatever the chunks' boundaries.
#[derive(Default)]
struct Splitter {
    line: Vec<u8>,
    /// The last byte fed was a `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
}

impl Splitter {
    /// Feed the next bytes; the lines they complete.
    fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut done = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => done.push(std::mem::take(&mut self.line)),
                _ => self.line.push(b),
            }
        }
        done
    }

    /// The text after the last line ending, if any.
    fn finish(self) -> Option<Vec<u8>> {
        (!self.line.is_empty()).then_some(self.line)
    }
}

/// Decode one line; `number` (from 1) names it in an error.
fn decode(line: Vec<u8>, errors: Errors, number: u64) -> SynResult<String> {
    match String::from_utf8(line) {
        Ok(text) => Ok(text),
        Err(e) => {
            let bytes = e.into_bytes();
            match errors {
                Errors::Replace => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Errors::Ignore => Ok(bytes.utf8_chunks().map(|c| c.valid()).collect()),
                Errors::Strict => {
                    let at = std::str::from_utf8(&bytes)
                        .err()
                        .map_or(0, |e| e.valid_up_to());
                    Err(SynErr::new(
                        "BadDataValu",
                        format!(
                            "'utf-8' codec can't decode byte 0x{:02x} in line {number}, \
                             position {at}: invalid UTF-8",
                            bytes.get(at).copied().unwrap_or(0)
                        ),
                    ))
                }
            }
        }
    }
}

/// The lines of the file whose bytes `chunks` yields, as strings.
pub(super) fn lines(mut chunks: Genr, errors: Errors) -> Genr {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut splitter = Splitter::default();
        let mut number = 0u64;
        let send_all = |lines: Vec<Vec<u8>>, number: &mut u64| {
            lines
                .into_iter()
                .map(|line| {
                    *number += 1;
                    decode(line, errors, *number).map(Value::Str)
                })
                .collect::<Vec<_>>()
        };
        while let Some(chunk) = chunks.recv().await {
            let decoded = match chunk {
                Ok(Value::Bin(bytes)) => send_all(splitter.feed(&bytes), &mut number),
                Ok(_) => vec![Err(SynErr::new("BadDataValu", "a chunk that is not bytes"))],
                Err(e) => vec![Err(e)],
            };
            for item in decoded {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        }
        let last = splitter.finish().into_iter().collect();
        for item in send_all(last, &mut number) {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The JSON value of each line that `lines` yields and that is not blank; a line that is not
/// JSON ends the stream with BadJsonText naming the file (`sha256`, hex).
pub(super) fn json_lines(mut lines: Genr, sha256: String) -> Genr {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            let item = line.and_then(|line| {
                let text = match &line {
                    Value::Str(text) => text.trim(),
                    _ => "",
                };
                if text.is_empty() {
                    return Ok(None);
                }
                Value::from_json_text(text).map(Some).map_err(|e| {
                    SynErr::new(
                        "BadJsonText",
                        format!("Bad json line encountered while processing {sha256}, ({e})"),
                    )
                    .with("sha256", sha256.as_str())
                })
            });
            let item = match item {
                Ok(None) => continue,
                Ok(Some(value)) => Ok(value),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = Splitter::default();
        let mut lines: Vec<Vec<u8>> = pieces.iter().flat_map(|p| splitter.feed(p)).collect();
        lines.extend(splitter.finish());
        lines
    }

    #[test]
    fn lines_end_at_each_kind_of_ending_whatever_the_chunks() {
        let text: &[u8] = b"one\ntwo\r\nthree\rfour\n\nlast";
        let want: Vec<Vec<u8>> = ["one", "two", "three", "four", "", "last"]
            .iter()
            .map(|l| l.as_bytes().to_vec())
            .collect();
        for cut in 0..=text.len() {
            assert_eq!(
                split_in(&[&text[..cut], &text[cut..]]),
                want,
                "cut at {cut}"
            );
        }
        assert_eq!(split_in(&[b"a\r", b"\nb"]), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(split_in(&[b"a\r", b"\r\n"]), [b"a".to_vec(), b"".to_vec()]);
        assert_eq!(split_in(&[b"a\n"]), [b"a".to_vec()]);
        assert!(split_in(&[b""]).is_empty());
    }

    #[test]
    fn undecodable_bytes_are_dropped_replaced_or_refused() {
        let line = b"ok\xff\xfeyes\xe2\x82".to_vec();
        assert_eq!(decode(line.clone(), Errors::Ignore, 1).unwrap(), "okyes");
        assert_eq!(
            decode(line.clone(), Errors::Replace, 1).unwrap(),
            "ok\u{fffd}\u{fffd}yes\u{fffd}"
        );
        let err = decode(line, Errors::Strict, 3).unwrap_err();
        assert_eq!(err.name, "BadDataValu");
        assert!(
            err.mesg().contains("0xff in line 3, position 2"),
            "{}",
            err.mesg()
        );
        assert_eq!(decode("é".into(), Errors::Strict, 1).unwrap(), "é");
        assert!(Errors::parse("bogus").is_err());
    }
}
