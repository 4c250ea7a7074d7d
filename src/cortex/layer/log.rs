//! The edit log: append-only segment files of CRC-framed records, the layer's point of
//! durability and its history.
//!
//! A segment `NNNNNNNNNNNNNNNNNNNN.seg` is named by the offset of its first record (20 decimal
//! digits) and starts with the 8-byte magic `SYNEDLG1`. Each record is framed as
//! `len: u32 LE, crc32(payload): u32 LE, payload`, and the payload is msgpack
//! `(offset, nodeedits, meta)` with buids as bytes. Offsets are dense from 0, so a segment that
//! ends at offset `n` is followed by the file named `n`.

use super::LogPos;
use crate::cortex::edits::{BuidForm, NodeEdit};
use crate::error::{SynErr, SynResult};
use crate::msgpack::{self, Value};
use crate::storage::{AppendLogRegistration, register_append_log};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first bytes of every segment.
const SEGMENT_MAGIC: &[u8; 8] = b"SYNEDLG1";
/// Where the first record of a segment starts.
pub(super) const SEGMENT_START: u64 = SEGMENT_MAGIC.len() as u64;
/// Bytes before each payload: its length and CRC.
const FRAME_HEAD: u64 = 8;

/// One logged change set: the edits of one `store` call that changed something.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// Its offset in the log.
    pub offset: u64,
    /// The applied nodeedits (old values filled in).
    pub edits: Vec<NodeEdit>,
    /// The caller's meta (`time`, `user`, ...).
    pub meta: Value,
}

impl LogEntry {
    /// The wire form `(offset, nodeedits, meta)`.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::from(self.offset),
            Value::Array(self.edits.iter().map(NodeEdit::to_value).collect()),
            self.meta.clone(),
        ])
    }

    fn from_payload(payload: &[u8]) -> Result<LogEntry, String> {
        let value = msgpack::decode_exact(payload).map_err(|e| e.to_string())?;
        LogEntry::from_value(&value)
    }

    /// Read the wire form `(offset, nodeedits, meta)` (`syncNodeEdits2`'s items).
    pub fn from_value(value: &Value) -> Result<LogEntry, String> {
        let Some([offset, Value::Array(edits), meta]) = value.as_array() else {
            return Err("not an (offset, nodeedits, meta) record".into());
        };
        let offset = match offset {
            Value::Int(i) => u64::try_from(*i).map_err(|_| "bad offset".to_string())?,
            _ => return Err("bad offset".into()),
        };
        let edits = edits
            .iter()
            .map(NodeEdit::from_value)
            .collect::<SynResult<_>>()
            .map_err(|e| e.mesg().to_owned())?;
        Ok(LogEntry {
            offset,
            edits,
            meta: meta.clone(),
        })
    }
}

/// Append one framed record `(offset, edits, meta)` to `out`.
pub(super) fn frame_record(
    offset: u64,
    edits: &[NodeEdit],
    meta: &Value,
    out: &mut Vec<u8>,
) -> SynResult<()> {
    let head = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEAD as usize]);
    msgpack::write_array_len(3, out);
    msgpack::write_int(offset.into(), out);
    msgpack::write_array_len(edits.len(), out);
    for ne in edits {
        ne.encode(BuidForm::Bytes, out);
    }
    msgpack::encode(meta, out);
    let payload = &out[head + FRAME_HEAD as usize..];
    let len = u32::try_from(payload.len()).map_err(|_| {
        SynErr::bad_arg(format!(
            "one store call's edits are too large to log ({} bytes)",
            payload.len()
        ))
    })?;
    let crc = crc32fast::hash(payload);
    out[head..head + 4].copy_from_slice(&len.to_le_bytes());
    out[head + 4..head + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The offset stored at the front of a payload, without decoding the rest.
fn payload_offset(payload: &[u8]) -> Option<u64> {
    // fixarray of 3, then the offset.
    if payload.first() != Some(&0x93) {
        return None;
    }
    match msgpack::decode(&payload[1..]).ok()?.0 {
        Value::Int(i) => u64::try_from(i).ok(),
        _ => None,
    }
}

/// The file of the segment whose first record has offset `first`.
pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// The first offsets of every segment in `dir`, sorted.
pub(super) fn list_segments(dir: &Path) -> SynResult<Vec<u64>> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| io_err(dir, "read directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, "read directory", e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(first) = stem.parse::<u64>()
        {
            found.push(first);
        }
    }
    found.sort_unstable();
    Ok(found)
}

pub(super) fn io_err(path: &Path, op: &str, err: std::io::Error) -> SynErr {
    SynErr::new("StorageError", format!("{}: {op}: {err}", path.display()))
        .with("path", path.display().to_string())
}

fn corrupt(path: &Path, pos: u64, why: &str) -> SynErr {
    SynErr::new(
        "StorageError",
        format!("{}: edit log corrupt at byte {pos}: {why}", path.display()),
    )
    .with("path", path.display().to_string())
}

/// fsync a directory so that a file created in it survives a crash.
pub(super) fn sync_dir(dir: &Path) -> SynResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "fsync directory", e))
}

/// What lies at a position of a segment.
pub(super) enum Frame {
    /// A record whose CRC checks out.
    Record {
        /// Its payload.
        payload: Vec<u8>,
        /// Where it starts.
        pos: u64,
    },
    /// The end of the file.
    End,
    /// The unfinished last record of a write that never completed.
    Torn {
        /// Where it starts.
        pos: u64,
    },
}

/// Reads the records of one segment in order.
pub(super) struct SegmentReader {
    path: PathBuf,
    file: BufReader<File>,
    pos: u64,
    len: u64,
    /// Bad frames from here on are torn writes, not corruption (see
    /// [`SegmentReader::lenient_from`]).
    lenient_from: Option<u64>,
}

impl SegmentReader {
    /// Open the segment starting with offset `first` and position it at `pos`.
    pub(super) fn open(dir: &Path, first: u64, pos: u64) -> SynResult<SegmentReader> {
        let path = segment_path(dir, first);
        let mut file = File::open(&path).map_err(|e| io_err(&path, "open", e))?;
        let len = file.metadata().map_err(|e| io_err(&path, "stat", e))?.len();
        if pos > len {
            return Err(corrupt(&path, pos, "position past the end of the segment"));
        }
        let mut magic = [0u8; SEGMENT_MAGIC.len()];
        file.read_exact(&mut magic)
            .map_err(|e| io_err(&path, "read segment header", e))?;
        if &magic != SEGMENT_MAGIC {
            return Err(corrupt(&path, 0, "not an edit log segment"));
        }
        file.seek(SeekFrom::Start(pos))
            .map_err(|e| io_err(&path, "seek", e))?;
        Ok(SegmentReader {
            path,
            file: BufReader::with_capacity(1 << 16, file),
            pos,
            len,
            lenient_from: None,
        })
    }

    /// Treat any bad frame at or after `pos` as the torn end of the log, even when good
    /// records follow it: after the machine went down, the bytes written without a sync since
    /// `pos` may have reached the disk in any order, and none of them were acknowledged.
    pub(super) fn lenient_from(&mut self, pos: u64) {
        self.lenient_from = Some(pos);
    }

    /// Where the next frame starts.
    pub(super) fn position(&self) -> u64 {
        self.pos
    }

    /// The segment file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Read the next frame. A bad frame is torn when nothing but zeros follows its start or it
    /// is cut short by the end of the file; anything else is corruption.
    pub(super) fn next_frame(&mut self) -> SynResult<Frame> {
        let pos = self.pos;
        let left = self.len - pos;
        if left == 0 {
            return Ok(Frame::End);
        }
        if left < FRAME_HEAD {
            return Ok(Frame::Torn { pos });
        }
        let mut head = [0u8; FRAME_HEAD as usize];
        self.read(&mut head)?;
        let len = u64::from(u32::from_le_bytes(head[..4].try_into().expect("4 bytes")));
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len == 0 || FRAME_HEAD + len > left {
            return self.bad_frame(pos, len, "bad record length");
        }
        let mut payload = vec![0u8; len as usize];
        self.read(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return self.bad_frame(pos, len, "checksum mismatch");
        }
        self.pos = pos + FRAME_HEAD + len;
        Ok(Frame::Record { payload, pos })
    }

    fn read(&mut self, buf: &mut [u8]) -> SynResult<()> {
        self.file
            .read_exact(buf)
            .map_err(|e| io_err(&self.path, "read", e))
    }

    /// A frame that does not check out is the torn end of an unfinished write when it runs to
    /// the end of the file or only zeros follow its header; anything else is corruption.
    fn bad_frame(&mut self, pos: u64, len: u64, why: &str) -> SynResult<Frame> {
        let torn = self.lenient_from.is_some_and(|from| pos >= from)
            || pos + FRAME_HEAD + len >= self.len
            || self.only_zeros_from(pos + FRAME_HEAD)?;
        if !torn {
            return Err(corrupt(&self.path, pos, why));
        }
        self.pos = self.len;
        Ok(Frame::Torn { pos })
    }

    fn only_zeros_from(&self, mut pos: u64) -> SynResult<bool> {
        let mut buf = vec![0u8; 1 << 16];
        while pos < self.len {
            let n = buf.len().min((self.len - pos) as usize);
            self.file
                .get_ref()
                .read_exact_at(&mut buf[..n], pos)
                .map_err(|e| io_err(&self.path, "read", e))?;
            if buf[..n].iter().any(|b| *b != 0) {
                return Ok(false);
            }
            pos += n as u64;
        }
        Ok(true)
    }
}

/// Decode a record read at `pos` of `path` and check that it has offset `expect`.
pub(super) fn decode_record(
    path: &Path,
    pos: u64,
    payload: &[u8],
    expect: u64,
) -> SynResult<LogEntry> {
    let entry = LogEntry::from_payload(payload).map_err(|why| corrupt(path, pos, &why))?;
    if entry.offset != expect {
        return Err(corrupt(
            path,
            pos,
            &format!("record has offset {}, expected {expect}", entry.offset),
        ));
    }
    Ok(entry)
}

/// The offset of a record, checked to be `expect`, without decoding its edits.
pub(super) fn check_record_offset(
    path: &Path,
    pos: u64,
    payload: &[u8],
    expect: u64,
) -> SynResult<()> {
    match payload_offset(payload) {
        Some(offs) if offs == expect => Ok(()),
        Some(offs) => Err(corrupt(
            path,
            pos,
            &format!("record has offset {offs}, expected {expect}"),
        )),
        None => Err(corrupt(path, pos, "record has no offset")),
    }
}

/// Reads logged entries in order, from one offset up to (not including) a limit, following
/// the segments.
pub struct EditIter {
    dir: PathBuf,
    reader: Option<SegmentReader>,
    segment: u64,
    next: u64,
    want: u64,
    limit: u64,
}

impl EditIter {
    /// Start at the record with offset `at` (found at `pos` of segment `segment`), yield from
    /// offset `want` up to `limit`.
    pub(super) fn new(
        dir: &Path,
        segment: u64,
        pos: u64,
        at: u64,
        want: u64,
        limit: u64,
    ) -> SynResult<EditIter> {
        let reader = if at < limit {
            Some(SegmentReader::open(dir, segment, pos)?)
        } else {
            None
        };
        Ok(EditIter {
            dir: dir.to_path_buf(),
            reader,
            segment,
            next: at,
            want,
            limit,
        })
    }

    /// The next entry with where its record starts.
    pub(super) fn next_positioned(&mut self) -> SynResult<Option<(LogPos, LogEntry)>> {
        while self.next < self.limit {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            match reader.next_frame()? {
                Frame::Record { payload, pos } => {
                    let offs = self.next;
                    self.next += 1;
                    if offs < self.want {
                        check_record_offset(reader.path(), pos, &payload, offs)?;
                        continue;
                    }
                    let entry = decode_record(reader.path(), pos, &payload, offs)?;
                    let at = LogPos {
                        segment: self.segment,
                        pos,
                    };
                    return Ok(Some((at, entry)));
                }
                Frame::End => {
                    self.reader = Some(SegmentReader::open(&self.dir, self.next, SEGMENT_START)?);
                    self.segment = self.next;
                }
                Frame::Torn { pos } => {
                    return Err(corrupt(
                        reader.path(),
                        pos,
                        "record missing before the end of the log",
                    ));
                }
            }
        }
        Ok(None)
    }
}

impl Iterator for EditIter {
    type Item = SynResult<LogEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_positioned() {
            Ok(entry) => entry.map(|(_, entry)| Ok(entry)),
            Err(e) => {
                // Stop after an error rather than repeating it.
                self.next = self.limit;
                Some(Err(e))
            }
        }
    }
}

/// Appends records to the last segment; owned by the layer's single writer.
///
/// The segment being written is registered as an append-only log
/// ([`register_append_log`]) whose length at a backup's snapshot point is `end` as of then:
/// the layer moves `end` (and rolls to a new segment) only while it holds the write gate, so
/// a live backup copies exactly the records its LMDB snapshot has applied. Closed segments are
/// never written again and are copied whole.
pub(super) struct LogWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    segment: u64,
    end: u64,
    /// `end`, for the backup registry (read while the gate is held).
    shared_end: Arc<AtomicU64>,
    _registration: AppendLogRegistration,
    file_len: u64,
    /// Bytes were written since the last `fdatasync`.
    unsynced: bool,
    /// `fdatasync` calls on records so far (a diagnostic).
    syncs: u64,
}

impl LogWriter {
    /// Create a new, empty segment whose first record will have offset `first`.
    pub(super) fn create(dir: &Path, first: u64) -> SynResult<LogWriter> {
        let path = segment_path(dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, "create segment", e))?;
        file.write_all_at(SEGMENT_MAGIC, 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err(&path, "write segment header", e))?;
        sync_dir(dir)?;
        let (shared_end, registration) = register_segment(&path, SEGMENT_START)?;
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            path,
            file,
            segment: first,
            end: SEGMENT_START,
            shared_end,
            _registration: registration,
            file_len: SEGMENT_START,
            unsynced: false,
            syncs: 0,
        })
    }

    /// Continue the segment `first`, whose good records end at `end`; anything after `end` (a
    /// torn record) is cut off.
    pub(super) fn resume(dir: &Path, first: u64, end: u64) -> SynResult<LogWriter> {
        let path = segment_path(dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, "open segment", e))?;
        let file_len = file.metadata().map_err(|e| io_err(&path, "stat", e))?.len();
        let (shared_end, registration) = register_segment(&path, end)?;
        let mut writer = LogWriter {
            dir: dir.to_path_buf(),
            path,
            file,
            segment: first,
            end,
            shared_end,
            _registration: registration,
            file_len,
            unsynced: false,
            syncs: 0,
        };
        if file_len != end {
            tracing::warn!(
                path = %writer.path.display(),
                good = end,
                found = file_len,
                "cutting off a torn record at the end of the edit log"
            );
            writer.rollback()?;
        }
        Ok(writer)
    }

    /// The first offset of the segment being written.
    pub(super) fn segment(&self) -> u64 {
        self.segment
    }

    /// Where the next record will start.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// Start a new segment at offset `first` if this one has reached `max_len` bytes; the old
    /// one is synced first, so only the last segment can hold unsynced records.
    pub(super) fn roll_if_full(&mut self, first: u64, max_len: u64) -> SynResult<()> {
        if self.end < max_len || self.end == SEGMENT_START {
            return Ok(());
        }
        self.sync()?;
        let syncs = self.syncs;
        *self = LogWriter::create(&self.dir, first)?;
        self.syncs = syncs;
        Ok(())
    }

    /// Write `bytes` (whole frames) at the end, flushing them to disk if `sync`, without moving
    /// the end: call [`LogWriter::advance`] once the records count, or write again to replace
    /// them. Unsynced bytes are flushed by the next synced write or [`LogWriter::sync`].
    pub(super) fn write(&mut self, bytes: &[u8], sync: bool) -> SynResult<()> {
        let write = || -> std::io::Result<()> {
            if self.file_len > self.end {
                self.file.set_len(self.end)?;
            }
            self.file.write_all_at(bytes, self.end)?;
            if sync {
                self.file.sync_data()?;
            }
            Ok(())
        };
        let res = write();
        // Even a failed write may have extended the file.
        self.file_len = self.end + bytes.len() as u64;
        res.map_err(|e| io_err(&self.path, "append", e))?;
        if sync {
            self.syncs += 1;
        }
        self.unsynced = !sync;
        Ok(())
    }

    /// Flush the records written without a sync to disk.
    pub(super) fn sync(&mut self) -> SynResult<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.path, "sync", e))?;
        self.syncs += 1;
        self.unsynced = false;
        Ok(())
    }

    /// How many times records were flushed to disk.
    pub(super) fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Make the last written `len` bytes part of the log.
    pub(super) fn advance(&mut self, len: u64) {
        self.end += len;
        self.shared_end.store(self.end, Ordering::SeqCst);
    }

    /// Cut the file back to the end of the last record that counts, and flush that.
    pub(super) fn rollback(&mut self) -> SynResult<()> {
        self.file
            .set_len(self.end)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err(&self.path, "truncate", e))?;
        self.file_len = self.end;
        self.unsynced = false;
        Ok(())
    }
}

/// Register the segment at `path` for backups, its length kept in the returned counter.
fn register_segment(path: &Path, end: u64) -> SynResult<(Arc<AtomicU64>, AppendLogRegistration)> {
    let shared_end = Arc::new(AtomicU64::new(end));
    let read = shared_end.clone();
    let registration = register_append_log(path, move || read.load(Ordering::SeqCst))
        .map_err(|e| io_err(path, "register for backups", e))?;
    Ok((shared_end, registration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cortex::edits::Edit;
    use crate::cortex::edits::stortype as st;

    #[test]
    fn records_hold_the_wire_form_of_nodeedits() {
        let n2 = [9u8; 32];
        let long = "n".repeat(70_000);
        let edits = vec![
            Edit::NodeAdd {
                valu: Value::from(long.as_str()),
                stortype: st::UTF8,
            },
            Edit::NodeDel {
                valu: Value::from(-5i64),
                stortype: st::I64,
            },
            Edit::PropSet {
                prop: "p".into(),
                valu: Value::Array(vec![Value::from(1.5), Value::Bin(vec![1, 2])]),
                oldv: Value::Nil,
                stortype: st::ARRAY | st::FLOAT64,
            },
            Edit::PropDel {
                prop: "p".into(),
                oldv: Value::from(u64::MAX),
                stortype: st::U64,
            },
            Edit::TagSet {
                tag: "t".repeat(40),
                valu: (Some(i64::MIN), Some(5)),
                oldv: None,
            },
            Edit::TagSet {
                tag: "t".into(),
                valu: (None, None),
                oldv: Some((Some(1), Some(2))),
            },
            Edit::TagDel {
                tag: "t".into(),
                oldv: (None, Some(3)),
            },
            Edit::TagPropSet {
                tag: "t".into(),
                prop: "s".into(),
                valu: Value::from(1i64),
                oldv: Value::from(0i64),
                stortype: st::I64,
            },
            Edit::TagPropDel {
                tag: "t".into(),
                prop: "s".into(),
                oldv: Value::from(1i64),
                stortype: st::I64,
            },
            Edit::NodeDataSet {
                name: "d".into(),
                valu: Value::map([("k", Value::from(true))]),
                oldv: Value::Nil,
            },
            Edit::NodeDataDel {
                name: "d".into(),
                oldv: Value::from("x"),
            },
            Edit::EdgeAdd {
                verb: "refs".into(),
                n2,
            },
            Edit::EdgeDel {
                verb: "refs".into(),
                n2,
            },
        ];
        let many: Vec<Edit> = (0..20)
            .map(|i| Edit::NodeDataSet {
                name: format!("d{i}"),
                valu: Value::Nil,
                oldv: Value::Nil,
            })
            .collect();
        let nodeedits = vec![
            NodeEdit {
                buid: [1u8; 32],
                form: "test:str".into(),
                edits,
            },
            NodeEdit {
                buid: [2u8; 32],
                form: "f".repeat(300),
                edits: many,
            },
        ];
        let meta = Value::map([("time", Value::from(1i64)), ("user", Value::from("u"))]);
        let mut framed = Vec::new();
        frame_record(7, &nodeedits, &meta, &mut framed).expect("frame");
        let entry = LogEntry {
            offset: 7,
            edits: nodeedits,
            meta,
        };
        assert_eq!(
            framed[FRAME_HEAD as usize..],
            entry.to_value().to_bytes()[..]
        );
        assert_eq!(
            LogEntry::from_payload(&framed[FRAME_HEAD as usize..]).expect("decode"),
            entry
        );
        // Storm's node:edits messages write the same edits with the buid as an iden.
        for ne in &entry.edits {
            let mut hexed = Vec::new();
            ne.encode(BuidForm::Iden, &mut hexed);
            assert_eq!(hexed, ne.to_value_hex().to_bytes());
        }
    }
}
