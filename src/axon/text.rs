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

/// The decoded lines of the file whose bytes `chunks` yields, each with whether a line ending
/// followed it (all but perhaps the last).
fn decoded(mut chunks: Genr, errors: Errors) -> mpsc::Receiver<SynResult<(String, bool)>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut splitter = Splitter::default();
        let mut number = 0u64;
        let mut decode_all = |lines: Vec<Vec<u8>>, ended: bool| {
            lines
                .into_iter()
                .map(|line| {
                    number += 1;
                    decode(line, errors, number).map(|text| (text, ended))
                })
                .collect::<Vec<_>>()
        };
        while let Some(chunk) = chunks.recv().await {
            let decoded = match chunk {
                Ok(Value::Bin(bytes)) => decode_all(splitter.feed(&bytes), true),
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
        for item in decode_all(splitter.finish().into_iter().collect(), false) {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Turn each item of `items` into at most one value with `f` (`None`: nothing to yield), with
/// `state` at hand, then the state into a last one with `last`; the first error ends the
/// stream.
fn map_items<T: Send + 'static, S: Send + 'static>(
    mut items: mpsc::Receiver<SynResult<T>>,
    mut state: S,
    mut f: impl FnMut(&mut S, T) -> SynResult<Option<Value>> + Send + 'static,
    last: impl FnOnce(S) -> SynResult<Option<Value>> + Send + 'static,
) -> Genr {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(item) = items.recv().await {
            let item = match item.and_then(|item| f(&mut state, item)) {
                Ok(None) => continue,
                Ok(Some(value)) => Ok(value),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
        if let Some(item) = last(state).transpose() {
            let _ = tx.send(item).await;
        }
    });
    rx
}

/// The lines of the file whose bytes `chunks` yields, as strings.
pub(super) fn lines(chunks: Genr, errors: Errors) -> Genr {
    map_items(
        decoded(chunks, errors),
        (),
        |_, (line, _)| Ok(Some(Value::Str(line))),
        |_| Ok(None),
    )
}

/// The JSON value of each line of the file that is not blank; a line that is not JSON ends
/// the stream with BadJsonText naming the file (`sha256`, hex).
pub(super) fn json_lines(chunks: Genr, errors: Errors, sha256: String) -> Genr {
    map_items(
        decoded(chunks, errors),
        sha256,
        |sha256, (line, _)| {
            let text = line.trim();
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
        },
        |_| Ok(None),
    )
}

/// The rows of a CSV file as lists of strings, read as Python's `csv.reader` reads the text.
pub(super) fn csv_rows(chunks: Genr, errors: Errors, format: CsvFormat) -> Genr {
    map_items(
        decoded(chunks, errors),
        CsvParser::new(format),
        |parser, (line, ended)| Ok(parser.line(&line, ended)?.map(row_value)),
        |parser| Ok(parser.finish()?.map(row_value)),
    )
}

fn row_value(row: Vec<String>) -> Value {
    Value::Array(row.into_iter().map(Value::Str).collect())
}

/// The longest field Python's `csv` module reads.
const CSV_FIELD_LIMIT: usize = 131_072;

/// A dialect of Python's `csv` module with its format parameters, as a reader uses them.
#[derive(Clone, Debug)]
pub(super) struct CsvFormat {
    pub(super) delimiter: char,
    pub(super) quotechar: Option<char>,
    pub(super) escapechar: Option<char>,
    pub(super) doublequote: bool,
    pub(super) skipinitialspace: bool,
    pub(super) strict: bool,
}

impl CsvFormat {
    /// The dialect `name`: `excel` (the default), `excel-tab` or `unix`.
    pub(super) fn dialect(name: &str) -> SynResult<CsvFormat> {
        let excel = CsvFormat {
            delimiter: ',',
            quotechar: Some('"'),
            escapechar: None,
            doublequote: true,
            skipinitialspace: false,
            strict: false,
        };
        match name {
            "excel" | "unix" => Ok(excel),
            "excel-tab" => Ok(CsvFormat {
                delimiter: '\t',
                ..excel
            }),
            _ => Err(SynErr::bad_arg(
                "Invalid CSV dialect, use one of ['excel', 'excel-tab', 'unix']",
            )),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CsvState {
    StartRecord,
    StartField,
    EscapedChar,
    AfterEscapedCrnl,
    InField,
    InQuotedField,
    EscapeInQuotedField,
    QuoteInQuotedField,
    EatCrnl,
}

/// Python's CSV reader, fed one line of text at a time.
struct CsvParser {
    format: CsvFormat,
    state: CsvState,
    field: String,
    field_len: usize,
    fields: Vec<String>,
}

impl CsvParser {
    fn new(format: CsvFormat) -> CsvParser {
        CsvParser {
            format,
            state: CsvState::StartRecord,
            field: String::new(),
            field_len: 0,
            fields: Vec::new(),
        }
    }

    /// Read one line (`ended`: a line ending followed it); the row it completes, if any.
    fn line(&mut self, line: &str, ended: bool) -> SynResult<Option<Vec<String>>> {
        for c in line.chars() {
            if c == '\0' {
                return Err(csv_error("line contains NUL"));
            }
            self.char(Some(c))?;
        }
        if ended {
            self.char(Some('\n'))?;
        }
        self.char(None)?;
        Ok((self.state == CsvState::StartRecord).then(|| std::mem::take(&mut self.fields)))
    }

    /// The end of the file: the row left open, if any.
    fn finish(mut self) -> SynResult<Option<Vec<String>>> {
        if self.field_len == 0 && self.state != CsvState::InQuotedField {
            return Ok(None);
        }
        if self.format.strict {
            return Err(csv_error("unexpected end of data"));
        }
        self.save();
        Ok(Some(self.fields))
    }

    fn save(&mut self) {
        self.fields.push(std::mem::take(&mut self.field));
        self.field_len = 0;
    }

    fn add(&mut self, c: char) -> SynResult<()> {
        if self.field_len >= CSV_FIELD_LIMIT {
            return Err(csv_error(&format!(
                "field larger than field limit ({CSV_FIELD_LIMIT})"
            )));
        }
        self.field.push(c);
        self.field_len += 1;
        Ok(())
    }

    /// End the field at a line ending (`c` is `\n` or `\r`) or at the end of a line (`None`).
    fn end_field_at_newline(&mut self, c: Option<char>) {
        self.save();
        self.state = match c {
            None => CsvState::StartRecord,
            Some(_) => CsvState::EatCrnl,
        };
    }

    /// One character, or `None` for the end of a line.
    fn char(&mut self, c: Option<char>) -> SynResult<()> {
        use CsvState::*;
        let CsvFormat {
            delimiter,
            quotechar: quote,
            escapechar: escape,
            doublequote,
            skipinitialspace,
            strict,
        } = self.format.clone();
        let delim = Some(delimiter);
        let newline = matches!(c, Some('\n' | '\r'));
        let mut state = self.state;
        // Python's states fall through to the next in places: the loop stands for that.
        loop {
            match state {
                StartRecord => {
                    if c.is_none() {
                        break;
                    }
                    if newline {
                        self.state = EatCrnl;
                        break;
                    }
                    state = StartField;
                }
                StartField => {
                    if newline || c.is_none() {
                        self.end_field_at_newline(c);
                    } else if c == quote && quote.is_some() {
                        self.state = InQuotedField;
                    } else if c == escape && escape.is_some() {
                        self.state = EscapedChar;
                    } else if c == Some(' ') && skipinitialspace {
                    } else if c == delim {
                        self.save();
                    } else {
                        self.add(c.unwrap_or_default())?;
                        self.state = InField;
                    }
                    break;
                }
                EscapedChar => {
                    match c {
                        Some('\n' | '\r') => {
                            self.add(c.unwrap_or_default())?;
                            self.state = AfterEscapedCrnl;
                        }
                        None => {
                            self.add('\n')?;
                            self.state = InField;
                        }
                        Some(ch) => {
                            self.add(ch)?;
                            self.state = InField;
                        }
                    }
                    break;
                }
                AfterEscapedCrnl => {
                    if c.is_none() {
                        break;
                    }
                    state = InField;
                }
                InField => {
                    if newline || c.is_none() {
                        self.end_field_at_newline(c);
                    } else if c == escape && escape.is_some() {
                        self.state = EscapedChar;
                    } else if c == delim {
                        self.save();
                        self.state = StartField;
                    } else {
                        self.add(c.unwrap_or_default())?;
                        self.state = InField;
                    }
                    break;
                }
                InQuotedField => {
                    if c.is_none() {
                    } else if c == escape && escape.is_some() {
                        self.state = EscapeInQuotedField;
                    } else if c == quote && quote.is_some() {
                        self.state = if doublequote {
                            QuoteInQuotedField
                        } else {
                            InField
                        };
                    } else {
                        self.add(c.unwrap_or_default())?;
                    }
                    break;
                }
                EscapeInQuotedField => {
                    self.add(c.unwrap_or('\n'))?;
                    self.state = InQuotedField;
                    break;
                }
                QuoteInQuotedField => {
                    if c == quote && quote.is_some() {
                        self.add(c.unwrap_or_default())?;
                        self.state = InQuotedField;
                    } else if c == delim {
                        self.save();
                        self.state = StartField;
                    } else if newline || c.is_none() {
                        self.end_field_at_newline(c);
                    } else if !strict {
                        self.add(c.unwrap_or_default())?;
                        self.state = InField;
                    } else {
                        let q = quote.unwrap_or('"');
                        return Err(csv_error(&format!("'{delimiter}' expected after '{q}'")));
                    }
                    break;
                }
                EatCrnl => {
                    if newline {
                    } else if c.is_none() {
                        self.state = StartRecord;
                    } else {
                        return Err(csv_error(
                            "new-line character seen in unquoted field - do you need to open \
                             the file with newline=''?",
                        ));
                    }
                    break;
                }
            }
        }
        Ok(())
    }
}

/// An error of Python's `csv` module, as Synapse's axon passes it on.
fn csv_error(mesg: &str) -> SynErr {
    SynErr::new("BadDataValu", format!("CSV error: {mesg}"))
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

    /// The rows of `text` as `csvrows` reads it.
    fn rows(text: &[u8], format: CsvFormat) -> SynResult<Vec<Vec<String>>> {
        let mut splitter = Splitter::default();
        let mut lines: Vec<(Vec<u8>, bool)> =
            splitter.feed(text).into_iter().map(|l| (l, true)).collect();
        lines.extend(splitter.finish().map(|l| (l, false)));
        let mut parser = CsvParser::new(format);
        let mut out = Vec::new();
        for (line, ended) in lines {
            let line = decode(line, Errors::Strict, 1)?;
            out.extend(parser.line(&line, ended)?);
        }
        out.extend(parser.finish()?);
        Ok(out)
    }

    fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|f| f.to_string()).collect())
            .collect()
    }

    #[test]
    fn csv_rows_are_pythons() {
        let excel = || CsvFormat::dialect("excel").unwrap();
        let text =
            b"a,b,c\r\n1,\"two, too\",\"say \"\"hi\"\"\"\n\n\"multi\r\nline\",x\n  sp, q\nlast,row";
        assert_eq!(
            rows(text, excel()).unwrap(),
            strings(&[
                &["a", "b", "c"],
                &["1", "two, too", "say \"hi\""],
                &[],
                &["multi\nline", "x"],
                &["  sp", " q"],
                &["last", "row"],
            ])
        );
        let skipping = CsvFormat {
            skipinitialspace: true,
            ..excel()
        };
        assert_eq!(
            rows(b"  sp, q", skipping).unwrap(),
            strings(&[&["sp", "q"]])
        );
        let tabs = CsvFormat::dialect("excel-tab").unwrap();
        assert_eq!(
            rows(b"a\tb\n\"c\td\"\te\n", tabs).unwrap(),
            strings(&[&["a", "b"], &["c\td", "e"]])
        );
        let escaping = CsvFormat {
            escapechar: Some('\\'),
            ..excel()
        };
        assert_eq!(
            rows(b"a\\,b,c\n", escaping).unwrap(),
            strings(&[&["a,b", "c"]])
        );
        // An open quote at the end: the row as it stands, or an error when strict.
        assert_eq!(
            rows(b"a,\"open\n", excel()).unwrap(),
            strings(&[&["a", "open\n"]])
        );
        let strict = CsvFormat {
            strict: true,
            ..excel()
        };
        let err = rows(b"a,\"open\n", strict).unwrap_err();
        assert_eq!(err.mesg(), "CSV error: unexpected end of data");
        // Text after a closing quote joins the field unless strict.
        assert_eq!(
            rows(b"\"ab\"cd,e", excel()).unwrap(),
            strings(&[&["abcd", "e"]])
        );
        assert!(CsvFormat::dialect("nope").is_err());
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
