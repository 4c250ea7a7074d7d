//! A compacted copy of an environment, made page by page from one read snapshot.
//!
//! What `mdb_copy -c` writes, without LMDB's copy machinery: two meta pages, then every page
//! the snapshot reaches (each tree's pages after their children, a record's overflow pages and
//! a named database's tree before the page that points at them), numbered anew from 2, so the
//! free pages and the free-page list are left out. The pages are read with `pread` into the
//! caller's own buffers: no pipe between LMDB and the caller, no second copy of each page, and
//! no map of the source to tear down afterwards. Every page is checked as it is read (its kind,
//! its bounds, its page numbers), and the count of pages copied must match what the snapshot's
//! meta page and free list say is in use, so a damaged environment fails the copy with a
//! reason instead of yielding a damaged copy. The unused middle of each page is written as
//! zeros: bytes of deleted records do not travel into the copy.
//!
//! The layout facts (page and node headers, meta page, database records) are LMDB's on-disk
//! format for 64-bit builds, the format of every environment syn and Python Synapse write.

use super::slab::{ReadTxn, Slab};
use super::{Result, StorageError};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Page header: page number (8), pad (2), flags (2), lower and upper bounds of the free
/// space, or an overflow run's page count (4).
const PAGE_HEADER: usize = 16;
/// Node header: data size or child page number (4), flags (2), key size (2).
const NODE_HEADER: usize = 8;
/// Page flags.
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
const P_LEAF2: u16 = 0x20;
/// Node flags: the value is in overflow pages; the value is a database record; the key has
/// duplicates (with [`F_SUBDATA`]: in a tree of their own).
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
const F_DUPDATA: u16 = 0x04;
/// No page: the root of an empty tree.
const NO_PAGE: u64 = u64::MAX;
/// The two meta pages every environment begins with.
const META_PAGES: u64 = 2;
const META_MAGIC: u32 = 0xBEEF_C0DE;
const DATA_VERSION: u32 = 1;
/// A database record (`MDB_db`): pad or page size (4), flags (2), depth (2), branch, leaf and
/// overflow page counts, entries, root (8 each).
const DB_RECORD: usize = 48;
const DB_ROOT: usize = 40;
/// The meta page after its page header: magic (4), version (4), fixed address (8), map size
/// (8), the free-page tree's record, the main tree's record, last page (8), txn id (8).
const META_FREE_DB: usize = 24;
const META_MAIN_DB: usize = META_FREE_DB + DB_RECORD;
const META_LAST_PAGE: usize = META_MAIN_DB + DB_RECORD;
const META_TXNID: usize = META_LAST_PAGE + 8;
const META_LEN: usize = META_TXNID + 8;
/// Trees deeper than this are damaged (LMDB's own cursors stop at 32 levels).
const MAX_DEPTH: usize = 32;
/// How often a snapshot is taken again when both meta pages moved on before they were read.
const META_TRIES: usize = 100;

/// Where a compacted copy goes: buffers of a fixed size (a multiple of the page size), filled
/// in order from the start of the copy.
pub trait CopySink {
    /// A buffer to fill.
    type Buffer: AsMut<[u8]>;

    /// The next empty buffer, or `None` to stop the copy ([`StorageError::Aborted`]).
    fn empty(&mut self) -> Option<Self::Buffer>;

    /// The first `len` bytes of `buffer` are the copy's next bytes; false stops the copy.
    fn filled(&mut self, buffer: Self::Buffer, len: usize) -> bool;
}

/// A consistent moment of an environment, ready to be written out as a compacted copy by
/// [`CompactSnapshot::write_to`]. The snapshot is the moment [`Slab::compact_snapshot`] was
/// called; the copy can be written later, while the environment is written on.
pub struct CompactSnapshot {
    path: PathBuf,
    file: File,
    page_size: usize,
    /// The meta page of the snapshot's transaction (after the page header).
    meta: Vec<u8>,
    /// The copy's last page number (pages in use, less one), once counted: counting reads the
    /// free-page list, which is left until after a backup's hold.
    last_page: Option<u64>,
    /// Whether the kernel can say that a read would wait for the disk (`RWF_NOWAIT`).
    nowait: AtomicBool,
    // Held to keep the snapshot's pages from being reused while they are read.
    _txn: ReadTxn,
}

impl Slab {
    /// Begin a read snapshot for a compacted copy (see [`CompactSnapshot`]).
    pub fn compact_snapshot(&self) -> Result<CompactSnapshot> {
        let path = self.path().to_path_buf();
        let data = path.join("data.mdb");
        let file = File::open(&data).map_err(|e| StorageError::io(&data, "open", e))?;
        for _ in 0..META_TRIES {
            let txn = self.read_txn()?;
            let txnid = txn.txn.id() as u64;
            // A writer that commits twice after the snapshot began overwrites its meta page;
            // the snapshot is then taken again.
            let Some((page_size, meta)) = read_meta(&file, &path, txnid)? else {
                continue;
            };
            return Ok(CompactSnapshot {
                path,
                file,
                page_size,
                meta,
                last_page: None,
                nowait: AtomicBool::new(true),
                _txn: txn,
            });
        }
        Err(corrupt(
            &path,
            format!("no meta page kept the snapshot's transaction in {META_TRIES} tries"),
        ))
    }
}

/// Read both meta pages; the page size and the meta of transaction `txnid`, if either is it.
fn read_meta(file: &File, path: &Path, txnid: u64) -> Result<Option<(usize, Vec<u8>)>> {
    let mut first = vec![0u8; PAGE_HEADER + META_LEN];
    read_at(file, path, &mut first, 0)?;
    let page_size = u32_at(&first, PAGE_HEADER + META_FREE_DB) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(corrupt(path, format!("bad page size {page_size}")));
    }
    let mut second = vec![0u8; PAGE_HEADER + META_LEN];
    read_at(file, path, &mut second, page_size as u64)?;
    for (number, page) in [first, second].into_iter().enumerate() {
        let meta = &page[PAGE_HEADER..];
        if u16_at(&page, 10) & P_META == 0
            || u32_at(meta, 0) != META_MAGIC
            || u32_at(meta, 4) != DATA_VERSION
        {
            return Err(corrupt(path, "not an LMDB meta page".into()));
        }
        if u64_at(meta, META_TXNID) == txnid {
            // Read again: a writer overwriting this page as it was read (two commits later)
            // would show as a difference.
            let mut again = vec![0u8; PAGE_HEADER + META_LEN];
            read_at(file, path, &mut again, (number * page_size) as u64)?;
            return Ok((again == page).then(|| (page_size, meta.to_vec())));
        }
    }
    Ok(None)
}

impl CompactSnapshot {
    /// The copy's size in bytes.
    pub fn bytes(&mut self) -> Result<u64> {
        Ok((self.last_page()? + 1).saturating_mul(self.page_size as u64))
    }

    fn last_page(&mut self) -> Result<u64> {
        if let Some(last) = self.last_page {
            return Ok(last);
        }
        let last = self.pages_in_use()? - 1;
        self.last_page = Some(last);
        Ok(last)
    }

    /// Write the copy into `sink`'s buffers, ending with a partly filled buffer if the copy
    /// does not fill its last one. Every buffer must be a whole number of pages.
    pub fn write_to<S: CopySink>(mut self, sink: &mut S) -> Result<()> {
        let last_page = self.last_page()?;
        let mut walk = Walk {
            snapshot: &self,
            out: Out {
                sink,
                buffer: None,
                filled: 0,
                next_page: 0,
                pages: last_page + 1,
                page_size: self.page_size,
                path: &self.path,
            },
            scratch: Vec::new(),
        };
        let main = &self.meta[META_MAIN_DB..META_MAIN_DB + DB_RECORD];
        let root = u64_at(main, DB_ROOT);
        walk.metas(root)?;
        let new_root = walk.tree(root, false, 0)?;
        let written = walk.out.next_page;
        walk.out.hand_on()?;
        let expected = if root == NO_PAGE {
            META_PAGES
        } else {
            last_page + 1
        };
        if written != expected || (root != NO_PAGE && new_root != last_page) {
            return Err(corrupt(
                &self.path,
                format!(
                    "the snapshot reaches {written} pages, but its meta page and free list \
                     say {expected} are in use"
                ),
            ));
        }
        Ok(())
    }

    /// The pages the snapshot uses: all up to its last page, less the free ones and the free
    /// list's own.
    fn pages_in_use(&self) -> Result<u64> {
        let free_db = &self.meta[META_FREE_DB..META_FREE_DB + DB_RECORD];
        let main_root = u64_at(&self.meta[META_MAIN_DB..], DB_ROOT);
        if main_root == NO_PAGE {
            return Ok(META_PAGES);
        }
        let mut free = u64_at(free_db, 8)
            .saturating_add(u64_at(free_db, 16))
            .saturating_add(u64_at(free_db, 24));
        let root = u64_at(free_db, DB_ROOT);
        if root != NO_PAGE {
            free = free.saturating_add(self.free_list_len(root, 0)?);
        }
        let pages = u64_at(&self.meta, META_LAST_PAGE).saturating_add(1);
        match pages.checked_sub(free) {
            Some(used) if used > META_PAGES => Ok(used),
            _ => Err(corrupt(&self.path, format!("{free} free pages of {pages}"))),
        }
    }

    /// The page numbers listed in the free-page tree under `pgno`: each record's value is a
    /// list that begins with its length.
    fn free_list_len(&self, pgno: u64, depth: usize) -> Result<u64> {
        if depth > MAX_DEPTH {
            return Err(self.damaged(pgno, "the free-page tree is too deep"));
        }
        let mut page = vec![0u8; self.page_size];
        self.read_page(pgno, &mut page)?;
        let kind = self.node_page(pgno, &page)?;
        let mut total = 0u64;
        for i in 0..node_count(&page) {
            let node = self.node(pgno, &page, i)?;
            if kind == P_BRANCH {
                total = total.saturating_add(self.free_list_len(node.child(&page), depth + 1)?);
            } else if node.flags & F_BIGDATA != 0 {
                let first = self.big_value_page(pgno, &page, &node)?;
                self.check_in_snapshot(first, self.page_size)?;
                let mut head = vec![0u8; PAGE_HEADER + 8];
                read_at(&self.file, &self.path, &mut head, self.offset(first))?;
                total = total.saturating_add(u64_at(&head, PAGE_HEADER));
            } else {
                let data = node.data(&page);
                if data.len() < 8 {
                    return Err(self.damaged(pgno, "a free-list record is too short"));
                }
                total = total.saturating_add(u64_at(data, 0));
            }
        }
        Ok(total)
    }

    fn offset(&self, pgno: u64) -> u64 {
        pgno.saturating_mul(self.page_size as u64)
    }

    /// Read page `pgno` into `into` as [`CompactSnapshot::read_page`] does; but where the page
    /// must come from the disk, first ask the kernel to read `ahead` (pages the walk reads
    /// next: the page's siblings) and empty it. A copy of an environment that is not in the
    /// page cache then has the disk read a branch's children side by side, where one at a time
    /// would take several times as long (LMDB's own copy has the map's read-around instead).
    fn read_page_ahead(&self, pgno: u64, into: &mut [u8], ahead: &mut &[u64]) -> Result<()> {
        if ahead.is_empty() || !self.nowait.load(Ordering::Relaxed) {
            return self.read_page(pgno, into);
        }
        self.check_in_snapshot(pgno, into.len())?;
        match read_cached(&self.file, into, self.offset(pgno)) {
            Some(true) => return Ok(()),
            Some(false) => {}
            None => self.nowait.store(false, Ordering::Relaxed),
        }
        self.prefetch(ahead);
        *ahead = &[];
        self.read_page(pgno, into)
    }

    /// Ask the kernel to read `pages` into the page cache, without waiting for them.
    fn prefetch(&self, pages: &[u64]) {
        let mut sorted = pages.to_vec();
        sorted.sort_unstable();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for pgno in sorted {
            match runs.last_mut() {
                Some((_, end)) if *end == pgno => *end += 1,
                _ => runs.push((pgno, pgno + 1)),
            }
        }
        for (start, end) in runs {
            let (Ok(offset), Ok(len)) = (
                i64::try_from(self.offset(start)),
                i64::try_from(self.offset(end - start)),
            ) else {
                continue;
            };
            let _ = nix::fcntl::posix_fadvise(
                &self.file,
                offset,
                len,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }

    /// Check that the `len` bytes from page `pgno` are pages of the snapshot.
    fn check_in_snapshot(&self, pgno: u64, len: usize) -> Result<()> {
        let last = u64_at(&self.meta, META_LAST_PAGE);
        let pages = (len / self.page_size) as u64;
        if pgno < META_PAGES || pgno.saturating_add(pages) > last.saturating_add(1) {
            return Err(corrupt(
                &self.path,
                format!("page {pgno} is outside the snapshot (last page {last})"),
            ));
        }
        Ok(())
    }

    /// Read page `pgno` (which must be in the snapshot) into `into`.
    fn read_page(&self, pgno: u64, into: &mut [u8]) -> Result<()> {
        self.check_in_snapshot(pgno, into.len())?;
        read_at(&self.file, &self.path, into, self.offset(pgno))
    }

    /// Check that `page` is a branch or leaf page with sane bounds; its kind.
    fn node_page(&self, pgno: u64, page: &[u8]) -> Result<u16> {
        let flags = u16_at(page, 10);
        let kind = flags & (P_BRANCH | P_LEAF);
        let lower = usize::from(u16_at(page, 12));
        let upper = usize::from(u16_at(page, 14));
        if (kind != P_BRANCH && kind != P_LEAF)
            || flags & P_OVERFLOW != 0
            || lower < PAGE_HEADER
            || lower > upper
            || upper > self.page_size
        {
            return Err(self.damaged(pgno, "not a sound branch or leaf page"));
        }
        if kind == P_BRANCH && node_count(page) == 0 {
            return Err(self.damaged(pgno, "a branch page without children"));
        }
        Ok(kind)
    }

    /// Node `i` of a branch or leaf page, its bounds checked.
    fn node(&self, pgno: u64, page: &[u8], i: usize) -> Result<Node> {
        let at = usize::from(u16_at(page, PAGE_HEADER + 2 * i));
        if at < PAGE_HEADER || at + NODE_HEADER > page.len() {
            return Err(self.damaged(pgno, "a node outside its page"));
        }
        let node = Node {
            at,
            flags: u16_at(page, at + 4),
            key_len: usize::from(u16_at(page, at + 6)),
            data_len: u32_at(page, at) as usize,
        };
        let branch = u16_at(page, 10) & P_BRANCH != 0;
        let data_len = if branch {
            0
        } else if node.flags & F_BIGDATA != 0 {
            8
        } else {
            node.data_len
        };
        if at + NODE_HEADER + node.key_len + data_len > page.len() {
            return Err(self.damaged(pgno, "a node runs past its page"));
        }
        Ok(node)
    }

    /// The first overflow page of a leaf node's value.
    fn big_value_page(&self, pgno: u64, page: &[u8], node: &Node) -> Result<u64> {
        let first = u64_at(page, node.data_at());
        if first == pgno {
            return Err(self.damaged(pgno, "a value in its own page"));
        }
        Ok(first)
    }

    fn damaged(&self, pgno: u64, what: &str) -> StorageError {
        corrupt(&self.path, format!("page {pgno}: {what}"))
    }
}

/// A node of a branch or leaf page: where it begins and its header.
struct Node {
    at: usize,
    flags: u16,
    key_len: usize,
    data_len: usize,
}

impl Node {
    /// A branch node's child page number (48 bits over the size and flags fields).
    fn child(&self, page: &[u8]) -> u64 {
        u64::from(u16_at(page, self.at))
            | u64::from(u16_at(page, self.at + 2)) << 16
            | u64::from(u16_at(page, self.at + 4)) << 32
    }

    fn set_child(&self, page: &mut [u8], pgno: u64) {
        page[self.at..self.at + 2].copy_from_slice(&(pgno as u16).to_le_bytes());
        page[self.at + 2..self.at + 4].copy_from_slice(&((pgno >> 16) as u16).to_le_bytes());
        page[self.at + 4..self.at + 6].copy_from_slice(&((pgno >> 32) as u16).to_le_bytes());
    }

    fn data_at(&self) -> usize {
        self.at + NODE_HEADER + self.key_len
    }

    fn data<'p>(&self, page: &'p [u8]) -> &'p [u8] {
        &page[self.data_at()..self.data_at() + self.data_len]
    }
}

/// The copy's output: the sink's current buffer and the next page number.
struct Out<'a, 's, S: CopySink> {
    sink: &'s mut S,
    buffer: Option<S::Buffer>,
    filled: usize,
    next_page: u64,
    /// The pages the copy must have: no more are taken.
    pages: u64,
    page_size: usize,
    path: &'a Path,
}

impl<S: CopySink> Out<'_, '_, S> {
    /// Room for up to `pages` whole pages at the end of the copy (at least one), and the page
    /// number of the first; the room is taken.
    fn take(&mut self, pages: u64) -> Result<(&mut [u8], u64)> {
        let path = self.path;
        if self.next_page >= self.pages {
            return Err(corrupt(
                path,
                format!(
                    "the snapshot reaches more than the {} pages in use",
                    self.pages
                ),
            ));
        }
        let full = match &mut self.buffer {
            Some(buffer) => self.filled == buffer.as_mut().len(),
            None => true,
        };
        if full {
            self.hand_on()?;
            let Some(mut buffer) = self.sink.empty() else {
                return Err(stopped(path));
            };
            let len = buffer.as_mut().len();
            if len == 0 || !len.is_multiple_of(self.page_size) {
                return Err(corrupt(
                    path,
                    format!(
                        "a copy buffer of {len} bytes for pages of {}",
                        self.page_size
                    ),
                ));
            }
            self.buffer = Some(buffer);
            self.filled = 0;
        }
        let Some(buffer) = self.buffer.as_mut() else {
            return Err(stopped(path));
        };
        let buffer = buffer.as_mut();
        let room = ((buffer.len() - self.filled) / self.page_size) as u64;
        let n = pages.min(room).min(self.pages - self.next_page);
        let len = n as usize * self.page_size;
        let first = self.next_page;
        self.next_page += n;
        let start = self.filled;
        self.filled += len;
        Ok((&mut buffer[start..start + len], first))
    }

    /// Give back the page just taken (its contents move elsewhere first).
    fn untake(&mut self) {
        self.filled -= self.page_size;
        self.next_page -= 1;
    }

    /// Hand the current buffer to the sink if it holds anything.
    fn hand_on(&mut self) -> Result<()> {
        if let Some(buffer) = self.buffer.take()
            && self.filled > 0
            && !self.sink.filled(buffer, self.filled)
        {
            return Err(stopped(self.path));
        }
        self.filled = 0;
        Ok(())
    }
}

/// A walk of the snapshot's trees into the output.
struct Walk<'a, 's, S: CopySink> {
    snapshot: &'a CompactSnapshot,
    out: Out<'a, 's, S>,
    /// Page buffers for branch pages and leaves being rewritten, one per level in use.
    scratch: Vec<Vec<u8>>,
}

impl<S: CopySink> Walk<'_, '_, S> {
    /// Write the two meta pages: the first with no main tree (as a new environment's), the
    /// second, which wins for its higher transaction id, with the main tree's record pointing
    /// at its new root (the copy's last page) and no free-page tree.
    fn metas(&mut self, root: u64) -> Result<()> {
        let snapshot = self.snapshot;
        let source = &snapshot.meta;
        let last_page = self.out.pages - 1;
        for number in 0..META_PAGES {
            let (page, at) = self.out.take(1)?;
            if at != number {
                return Err(corrupt(&snapshot.path, "the copy did not begin".into()));
            }
            page.fill(0);
            page[..8].copy_from_slice(&number.to_le_bytes());
            page[10..12].copy_from_slice(&P_META.to_le_bytes());
            let meta = &mut page[PAGE_HEADER..PAGE_HEADER + META_LEN];
            // Magic, version, fixed address and map size as the source's.
            meta[..META_FREE_DB].copy_from_slice(&source[..META_FREE_DB]);
            // The free-page tree: empty, with the page size and flags it carries.
            meta[META_FREE_DB..META_FREE_DB + 6]
                .copy_from_slice(&source[META_FREE_DB..META_FREE_DB + 6]);
            meta[META_FREE_DB + DB_ROOT..META_FREE_DB + DB_RECORD]
                .copy_from_slice(&NO_PAGE.to_le_bytes());
            let main = META_MAIN_DB;
            let main_flags = u16_at(source, main + 4);
            let mut txnid = 0u64;
            if number == 0 || root == NO_PAGE {
                meta[main + DB_ROOT..main + DB_RECORD].copy_from_slice(&NO_PAGE.to_le_bytes());
                meta[META_LAST_PAGE..META_TXNID].copy_from_slice(&1u64.to_le_bytes());
                if number == 1 && main_flags != 0 {
                    meta[main + 4..main + 6].copy_from_slice(&main_flags.to_le_bytes());
                    txnid = 1;
                }
            } else {
                meta[main..main + DB_RECORD].copy_from_slice(&source[main..main + DB_RECORD]);
                meta[main + DB_ROOT..main + DB_RECORD].copy_from_slice(&last_page.to_le_bytes());
                meta[META_LAST_PAGE..META_TXNID].copy_from_slice(&last_page.to_le_bytes());
                txnid = 1;
            }
            // LMDB opens the meta with the higher transaction id: the second, unless the
            // environment is empty and plain (then the two are alike).
            meta[META_TXNID..META_LEN].copy_from_slice(&txnid.to_le_bytes());
        }
        Ok(())
    }

    /// Copy the tree under `root` (a database's, or with `dups` a key's duplicates); its new
    /// root.
    fn tree(&mut self, root: u64, dups: bool, depth: usize) -> Result<u64> {
        if root == NO_PAGE {
            return Ok(root);
        }
        self.page(root, dups, depth, &mut &[][..])
    }

    /// Copy page `pgno` and everything under it; its new page number. `ahead` are pages read
    /// next, to be read ahead if this one is not in the page cache (see
    /// [`CompactSnapshot::read_page_ahead`]).
    fn page(&mut self, pgno: u64, dups: bool, depth: usize, ahead: &mut &[u64]) -> Result<u64> {
        let snapshot = self.snapshot;
        if depth > MAX_DEPTH {
            return Err(snapshot.damaged(pgno, "the tree is too deep"));
        }
        // Read straight into the output; a page with pages under it moves to scratch.
        let (slot, new) = self.out.take(1)?;
        snapshot.read_page_ahead(pgno, slot, ahead)?;
        let kind = snapshot.node_page(pgno, slot)?;
        let leaf_only = kind == P_LEAF
            && (dups
                || u16_at(slot, 10) & P_LEAF2 != 0
                || !(0..node_count(slot)).any(|i| {
                    snapshot
                        .node(pgno, slot, i)
                        .is_ok_and(|n| n.flags & (F_BIGDATA | F_SUBDATA) != 0)
                }));
        if leaf_only {
            finish_page(slot, new);
            return Ok(new);
        }
        let mut page = self.scratch.pop().unwrap_or_default();
        page.clear();
        page.extend_from_slice(slot);
        self.out.untake();
        let copied = self.children(pgno, &mut page, kind, depth);
        let result = copied.and_then(|()| {
            let (slot, new) = self.out.take(1)?;
            slot.copy_from_slice(&page);
            finish_page(slot, new);
            Ok(new)
        });
        self.scratch.push(page);
        result
    }

    /// Copy what the nodes of `page` point at (a branch's children, a leaf's overflow pages
    /// and database trees) and set their new page numbers in `page`.
    fn children(&mut self, pgno: u64, page: &mut [u8], kind: u16, depth: usize) -> Result<()> {
        let snapshot = self.snapshot;
        let nodes = (0..node_count(page))
            .map(|i| snapshot.node(pgno, page, i))
            .collect::<Result<Vec<_>>>()?;
        let kids: Vec<u64> = match kind {
            P_BRANCH => nodes.iter().map(|node| node.child(page)).collect(),
            _ => Vec::new(),
        };
        // The children are read ahead once, at the first that is not in the page cache.
        let mut read_ahead = true;
        for (i, node) in nodes.iter().enumerate() {
            if kind == P_BRANCH {
                let mut ahead = if read_ahead { &kids[i..] } else { &[][..] };
                let child = self.page(kids[i], false, depth + 1, &mut ahead)?;
                read_ahead &= !ahead.is_empty();
                node.set_child(page, child);
            } else if node.flags & F_BIGDATA != 0 {
                let first = snapshot.big_value_page(pgno, page, node)?;
                let new = self.overflow(first)?;
                let at = node.data_at();
                page[at..at + 8].copy_from_slice(&new.to_le_bytes());
            } else if node.flags & F_SUBDATA != 0 {
                if node.data_len != DB_RECORD {
                    return Err(snapshot.damaged(pgno, "a database record of the wrong size"));
                }
                let at = node.data_at() + DB_ROOT;
                let root = u64_at(page, at);
                let dups = node.flags & F_DUPDATA != 0;
                let new = self.tree(root, dups, depth + 1)?;
                page[at..at + 8].copy_from_slice(&new.to_le_bytes());
            }
        }
        Ok(())
    }

    /// Copy the overflow run that begins at page `first`; its new first page number.
    fn overflow(&mut self, first: u64) -> Result<u64> {
        let snapshot = self.snapshot;
        let (slot, new) = self.out.take(1)?;
        snapshot.read_page(first, slot)?;
        let pages = u64::from(u32_at(slot, 12));
        if u16_at(slot, 10) & P_OVERFLOW == 0 || pages == 0 {
            return Err(snapshot.damaged(first, "not an overflow page"));
        }
        slot[..8].copy_from_slice(&new.to_le_bytes());
        let mut next = first + 1;
        let end = first + pages;
        while next < end {
            let (room, _) = self.out.take(end - next)?;
            let n = (room.len() / snapshot.page_size) as u64;
            snapshot.read_page(next, room)?;
            next += n;
        }
        Ok(new)
    }
}

/// Give a copied branch or leaf page its new number and zero its unused middle.
fn finish_page(page: &mut [u8], pgno: u64) {
    page[..8].copy_from_slice(&pgno.to_le_bytes());
    let lower = usize::from(u16_at(page, 12));
    let upper = usize::from(u16_at(page, 14));
    let unused = upper - lower;
    if u16_at(page, 10) & P_LEAF2 != 0 {
        // Fixed-size keys packed from the header on: the unused room is at the end.
        let len = page.len();
        page[len - unused..].fill(0);
    } else {
        page[lower..upper].fill(0);
    }
}

fn node_count(page: &[u8]) -> usize {
    (usize::from(u16_at(page, 12)) - PAGE_HEADER) / 2
}

fn read_at(file: &File, path: &Path, into: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(into, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(
                path,
                format!("data.mdb ends before byte {}", offset + into.len() as u64),
            )
        } else {
            StorageError::io(&path.join("data.mdb"), "read", e)
        }
    })
}

/// Read `into` at `offset` only if all of it is in the page cache: `Some(true)` when read,
/// `Some(false)` when some of it would have to come from the disk, `None` when the kernel or
/// the file system cannot tell (then nothing is to be asked again).
fn read_cached(file: &File, into: &mut [u8], offset: u64) -> Option<bool> {
    let offset = i64::try_from(offset).ok()?;
    let iov = nix::libc::iovec {
        iov_base: into.as_mut_ptr().cast(),
        iov_len: into.len(),
    };
    // SAFETY: one iovec over `into`, which outlives the call; the kernel writes at most
    // `into.len()` bytes into it.
    let n = unsafe { nix::libc::preadv2(file.as_raw_fd(), &iov, 1, offset, nix::libc::RWF_NOWAIT) };
    if n >= 0 {
        return Some(n as usize == into.len());
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR => Some(false),
        _ => None,
    }
}

fn corrupt(path: &Path, reason: String) -> StorageError {
    StorageError::Damaged {
        path: path.to_path_buf(),
        reason,
    }
}

fn stopped(path: &Path) -> StorageError {
    StorageError::Aborted {
        path: path.to_path_buf(),
        reason: "the copy was stopped".into(),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default())
}
