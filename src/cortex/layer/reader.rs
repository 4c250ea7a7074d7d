//! Read snapshots of a layer: storage nodes, lifts in index order, edges and node data.

use super::keys::{self, KeyFilter, KeyRange, Scan, is_array, prefix_end};
use super::pipeline::Queued;
use super::sode::Sode;
use super::{Abrv, AbrvName, Cmp, Dbs, Layer};
use crate::cortex::edits::{Buid, Ival, ival_from_value, stortype as st};
use crate::error::{SynErr, SynResult};
use crate::msgpack::{self, Value};
use crate::storage::{Db, ReadTxn, int64un};
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::PoisonError;

/// A read snapshot of a layer; `Send`, so it can live in `spawn_blocking`. One from
/// [`Layer::reader`] holds every write made before it. [`LayerReader::sode`] answers with
/// every write made before the reader too, and any made since: storage nodes of writes LMDB
/// does not have yet come from memory, each as its newest write left it.
///
/// Drop it when done: the LMDB map cannot grow while it is open.
pub struct LayerReader {
    layer: Layer,
    snap: Snapshot,
}

/// A read snapshot of a layer's LMDB, opened when first needed: storage nodes the queued
/// writes left come from memory, so a write or a lookup that finds all it reads there opens
/// none. The others are read from it while the pipeline's generation is still `since`
/// (taken before it is opened).
pub(super) struct Snapshot {
    since: u64,
    txn: OnceCell<ReadTxn>,
}

impl Snapshot {
    /// A snapshot of what LMDB holds from now on.
    pub(super) fn new(layer: &Layer) -> Snapshot {
        Snapshot {
            since: layer.inner.pipeline.generation(),
            txn: OnceCell::new(),
        }
    }

    /// The read transaction, opened on the first call.
    pub(super) fn txn(&self, layer: &Layer) -> SynResult<&ReadTxn> {
        if let Some(txn) = self.txn.get() {
            return Ok(txn);
        }
        let txn = layer.inner.slab.read_txn()?;
        Ok(self.txn.get_or_init(|| txn))
    }
}

/// An index entry of a lift: the key below the name's abbreviation (empty for tag lifts,
/// whose entries are ordered by buid alone) and the buid.
pub type LiftEntry = (Vec<u8>, Buid);

/// Buids of a lift in index order, read lazily from the reader's snapshot.
pub struct Lift<'t> {
    inner: Box<dyn Iterator<Item = SynResult<LiftEntry>> + 't>,
}

impl Iterator for Lift<'_> {
    type Item = SynResult<Buid>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|entry| entry.map(|(_, buid)| buid))
    }
}

impl Lift<'_> {
    fn empty() -> Lift<'static> {
        Lift {
            inner: Box::new(std::iter::empty()),
        }
    }

    /// The next entry with its index key, which a view merging several layers' lifts
    /// orders by `(key, buid)` as Synapse does.
    pub fn next_entry(&mut self) -> Option<SynResult<LiftEntry>> {
        self.inner.next()
    }
}

/// Where a lift finds the whole stored value when the index key does not hold it.
#[derive(Clone)]
enum Source {
    FormValu,
    Prop(String),
    TagProp(String, String),
}

fn stored_buid(val: &[u8]) -> SynResult<Buid> {
    val.try_into()
        .map_err(|_| SynErr::new("StorageError", "index entry does not hold a buid"))
}

impl LayerReader {
    /// A snapshot of what LMDB holds now.
    pub(super) fn new(layer: Layer) -> SynResult<LayerReader> {
        let snap = Snapshot::new(&layer);
        Ok(LayerReader { layer, snap })
    }

    fn txn(&self) -> SynResult<&ReadTxn> {
        self.snap.txn(&self.layer)
    }

    fn dbs(&self) -> &Dbs {
        &self.layer.inner.dbs
    }

    /// The abbreviation of a name, if it was ever written.
    fn abrv(&self, name: AbrvName<'_>) -> SynResult<Option<Abrv>> {
        let key = name.key();
        let cache = &self.layer.inner.abrvs;
        if let Some(abrv) = cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Some(*abrv));
        }
        let Some(bytes) = self.dbs().abrv.get(self.txn()?, &key)? else {
            return Ok(None);
        };
        let abrv: Abrv = bytes
            .try_into()
            .map_err(|_| SynErr::new("StorageError", "bad stored abbreviation"))?;
        cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, abrv);
        Ok(Some(abrv))
    }

    /// The storage node of a buid.
    pub fn sode(&self, buid: &Buid) -> SynResult<Option<Sode>> {
        self.layer.read_sode(&self.snap, buid)
    }

    /// Every storage node of the layer, by buid.
    pub fn sodes(&self) -> SynResult<impl Iterator<Item = SynResult<(Buid, Sode)>> + '_> {
        let entries = self.dbs().bybuid.iter(self.txn()?)?;
        Ok(entries.map(|e| {
            let (key, val) = e?;
            Ok((stored_buid(key)?, Sode::decode(val)?))
        }))
    }

    /// The number of nodes of each form.
    pub fn form_counts(&self) -> SynResult<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for entry in self.dbs().counts.iter(self.txn()?)? {
            let (key, val) = entry?;
            let count = int64un(val);
            if count > 0 {
                out.insert(String::from_utf8_lossy(key).into_owned(), count);
            }
        }
        Ok(out)
    }

    /// Every node of a form, in the order of its primary values' index keys.
    pub fn lift_form(&self, form: &str) -> SynResult<Lift<'_>> {
        self.lift_prop(form, None, st::UTF8, &Cmp::Any)
    }

    /// Nodes of `form` whose prop (or, for `None`, primary value) of `stortype` matches `cmp`,
    /// in index order. Universal props of one form (`.created`) work too.
    pub fn lift_prop(
        &self,
        form: &str,
        prop: Option<&str>,
        stortype: u16,
        cmp: &Cmp,
    ) -> SynResult<Lift<'_>> {
        let (name, source) = match prop {
            None => (AbrvName::Form(form), Source::FormValu),
            Some(prop) => (AbrvName::Prop(form, prop), Source::Prop(prop.to_owned())),
        };
        if is_array(stortype) && !matches!(cmp, Cmp::Any | Cmp::Eq(_)) {
            return Err(SynErr::new(
                "NoSuchCmpr",
                format!(
                    "an array value has no comparator {} (lift its items instead)",
                    cmp.symbol()
                ),
            ));
        }
        // A whole array is indexed by the hash of its msgpack.
        let stortype = if is_array(stortype) {
            st::MSGP
        } else {
            stortype
        };
        self.lift_by(name, &self.dbs().byprop, stortype, cmp, source, false)
    }

    /// Nodes of `form` with an array prop holding an item of base stortype `stortype` that
    /// matches `cmp` (Storm's `*[...]`), in index order of the items. A node appears once
    /// for each matching item.
    pub fn lift_prop_array(
        &self,
        form: &str,
        prop: &str,
        stortype: u16,
        cmp: &Cmp,
    ) -> SynResult<Lift<'_>> {
        let source = Source::Prop(prop.to_owned());
        let base = stortype & !st::ARRAY;
        let name = AbrvName::Prop(form, prop);
        self.lift_by(name, &self.dbs().byarray, base, cmp, source, true)
    }

    /// Nodes of every form (or of `form`) whose universal prop matches `cmp`, in index order.
    pub fn lift_univ(
        &self,
        prop: &str,
        form: Option<&str>,
        stortype: u16,
        cmp: &Cmp,
    ) -> SynResult<Lift<'_>> {
        match form {
            Some(form) => self.lift_prop(form, Some(prop), stortype, cmp),
            None => {
                let source = Source::Prop(prop.to_owned());
                let name = AbrvName::Univ(prop);
                self.lift_by(name, &self.dbs().byprop, stortype, cmp, source, false)
            }
        }
    }

    /// Nodes with a tag (of one form or of all): forms in the order each was first written,
    /// then by buid.
    pub fn lift_tag(&self, tag: &str, form: Option<&str>) -> SynResult<Lift<'_>> {
        let Some(prefix) = self.tag_prefix(tag, form)? else {
            return Ok(Lift::empty());
        };
        let entries = self.dbs().bytag.prefix(self.txn()?, &prefix)?;
        Ok(Lift {
            inner: Box::new(entries.map(|e| Ok((Vec::new(), stored_buid(e?.1)?)))),
        })
    }

    /// Nodes whose tag interval equals (`Cmp::Eq`) or overlaps (`Cmp::Overlaps`) an interval.
    pub fn lift_tag_valu(&self, tag: &str, form: Option<&str>, cmp: &Cmp) -> SynResult<Lift<'_>> {
        let test: Box<dyn Fn(Ival) -> bool> = match cmp {
            Cmp::Eq(valu) => {
                let want = ival_from_value(valu)?;
                Box::new(move |ival| ival == want)
            }
            Cmp::Overlaps(valu) => {
                let (min, max) = match ival_from_value(valu)? {
                    (Some(min), Some(max)) => (min, max),
                    _ => return Err(SynErr::bad_arg(format!("bad interval {valu}"))),
                };
                Box::new(move |ival| match ival {
                    (Some(lo), Some(hi)) => lo < max && hi > min,
                    _ => false,
                })
            }
            other => {
                return Err(SynErr::new(
                    "NoSuchCmpr",
                    format!("tags have no comparator {}", other.symbol()),
                )
                .with("cmpr", other.symbol()));
            }
        };
        let tag = tag.to_owned();
        let lift = self.lift_tag(&tag, form)?;
        Ok(Lift {
            inner: Box::new(lift.inner.filter_map(move |entry| {
                let keep = entry.and_then(|(key, buid)| {
                    let ival = self.sode(&buid)?.and_then(|s| s.tag(&tag));
                    Ok(ival.is_some_and(&test).then_some((key, buid)))
                });
                keep.transpose()
            })),
        })
    }

    /// Nodes (of one form or of all) whose tag prop matches `cmp`, in index order.
    pub fn lift_tagprop(
        &self,
        tag: &str,
        prop: &str,
        form: Option<&str>,
        stortype: u16,
        cmp: &Cmp,
    ) -> SynResult<Lift<'_>> {
        let source = Source::TagProp(tag.to_owned(), prop.to_owned());
        let name = AbrvName::TagProp(form, tag, prop);
        let base = stortype & !st::ARRAY;
        let array = is_array(stortype);
        self.lift_by(name, &self.dbs().bytagprop, base, cmp, source, array)
    }

    /// Whether any node holds tag prop `prop` (under any tag), its values stored as
    /// `stortype`.
    pub fn has_tagprop(&self, prop: &str, stortype: u16) -> SynResult<bool> {
        let mut tags = Vec::new();
        for entry in self.dbs().abrv.prefix(self.txn()?, b"h")? {
            let (key, _) = entry?;
            let mut parts = key[1..].split(|b| *b == 0);
            if let (Some(tag), Some(name)) = (parts.next(), parts.next())
                && name == prop.as_bytes()
            {
                tags.push(String::from_utf8_lossy(tag).into_owned());
            }
        }
        for tag in tags {
            if self
                .lift_tagprop(&tag, prop, None, stortype, &Cmp::Any)?
                .next()
                .transpose()?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn tag_prefix(&self, tag: &str, form: Option<&str>) -> SynResult<Option<Vec<u8>>> {
        let Some(tagabrv) = self.abrv(AbrvName::Tag(tag))? else {
            return Ok(None);
        };
        let mut prefix = tagabrv.to_vec();
        if let Some(form) = form {
            let Some(formabrv) = self.abrv(AbrvName::Form(form))? else {
                return Ok(None);
            };
            prefix.extend(formabrv);
        }
        Ok(Some(prefix))
    }

    /// Scan one abbreviation's entries of a value index.
    fn lift_by<'t>(
        &'t self,
        name: AbrvName<'_>,
        db: &'t Db,
        stortype: u16,
        cmp: &Cmp,
        source: Source,
        array: bool,
    ) -> SynResult<Lift<'t>> {
        let Scan { range, filter } = keys::plan(stortype, cmp)?;
        let Some(abrv) = self.abrv(name)? else {
            return Ok(Lift::empty());
        };
        let KeyRange::Range(lo, hi) = range else {
            return Ok(Lift::empty());
        };
        let full = |key: Vec<u8>| {
            let mut full = abrv.to_vec();
            full.extend(key);
            full
        };
        let lo = match lo {
            Bound::Included(k) => Bound::Included(full(k)),
            Bound::Excluded(k) => Bound::Excluded(full(k)),
            Bound::Unbounded => Bound::Included(abrv.to_vec()),
        };
        let hi = match hi {
            Bound::Included(k) => Bound::Included(full(k)),
            Bound::Excluded(k) => Bound::Excluded(full(k)),
            Bound::Unbounded => match prefix_end(&abrv) {
                Some(end) => Bound::Excluded(end),
                None => Bound::Unbounded,
            },
        };
        let entries = db.range(self.txn()?, bound_ref(&lo), bound_ref(&hi))?;
        let items = entries.map(move |e| -> SynResult<(Vec<u8>, Buid)> {
            let (key, val) = e?;
            Ok((key[abrv.len()..].to_vec(), stored_buid(val)?))
        });
        let Some(filter) = filter else {
            return Ok(Lift {
                inner: Box::new(items),
            });
        };
        let matcher = Matcher {
            reader: self,
            filter,
            stortype,
            source,
            array,
        };
        Ok(Lift {
            inner: Box::new(items.filter_map(move |item| {
                let keep = item.and_then(|(key, buid)| {
                    Ok(matcher.matches(&key, &buid)?.then_some((key, buid)))
                });
                keep.transpose()
            })),
        })
    }

    /// The stored value a lift compares: the primary value, a prop, or a tag prop.
    fn stored_value(&self, buid: &Buid, source: &Source) -> SynResult<Option<Value>> {
        let Some(sode) = self.sode(buid)? else {
            return Ok(None);
        };
        Ok(match source {
            Source::FormValu => sode.valu.map(|(v, _)| v),
            Source::Prop(prop) => sode.prop(prop).map(|(v, _)| v.clone()),
            Source::TagProp(tag, prop) => sode.tagprop(tag, prop).map(|(v, _)| v.clone()),
        })
    }

    /// Light edges from `buid`: `(verb, n2)` by verb, then n2; only `verb` if given.
    pub fn edges_n1(&self, buid: &Buid, verb: Option<&str>) -> SynResult<Vec<(String, Buid)>> {
        self.edges(&self.dbs().edgesn1, buid, verb)
    }

    /// Light edges to `buid`: `(verb, n1)` by verb, then n1; only `verb` if given.
    pub fn edges_n2(&self, buid: &Buid, verb: Option<&str>) -> SynResult<Vec<(String, Buid)>> {
        self.edges(&self.dbs().edgesn2, buid, verb)
    }

    /// Whether the edge `n1 -(verb)> n2` exists.
    pub fn has_edge(&self, n1: &Buid, verb: &str, n2: &Buid) -> SynResult<bool> {
        let key = super::apply::edge_key(n1, verb, n2);
        Ok(self.dbs().edgesn1.get(self.txn()?, &key)?.is_some())
    }

    fn edges(&self, db: &Db, buid: &Buid, verb: Option<&str>) -> SynResult<Vec<(String, Buid)>> {
        let mut prefix = buid.to_vec();
        if let Some(verb) = verb {
            prefix.extend_from_slice(verb.as_bytes());
            prefix.push(0);
        }
        let mut out = Vec::new();
        for entry in db.prefix(self.txn()?, &prefix)? {
            let (key, _) = entry?;
            // key = buid (32) + verb + 0 + other (32)
            if key.len() < 65 {
                return Err(SynErr::new("StorageError", "bad stored edge key"));
            }
            let verb = String::from_utf8_lossy(&key[32..key.len() - 33]).into_owned();
            out.push((verb, stored_buid(&key[key.len() - 32..])?));
        }
        Ok(out)
    }

    /// A node data value.
    pub fn nodedata(&self, buid: &Buid, name: &str) -> SynResult<Option<Value>> {
        let Some(abrv) = self.abrv(AbrvName::Data(name))? else {
            return Ok(None);
        };
        let mut key = buid.to_vec();
        key.extend(abrv);
        match self.dbs().nodedata.get(self.txn()?, &key)? {
            Some(bytes) => decode_data(bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every node data value of a node, `(name, value)` in the order names were first used.
    pub fn nodedata_all(&self, buid: &Buid) -> SynResult<Vec<(String, Value)>> {
        let mut out = Vec::new();
        for entry in self.dbs().nodedata.prefix(self.txn()?, buid)? {
            let (key, val) = entry?;
            let name = self.dbs().abrvrev.get(self.txn()?, &key[32..])?;
            let Some(name) = name.and_then(|n| n.strip_prefix(b"d")) else {
                return Err(SynErr::new("StorageError", "node data name is unknown"));
            };
            out.push((
                String::from_utf8_lossy(name).into_owned(),
                decode_data(val)?,
            ));
        }
        Ok(out)
    }
}

fn bound_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn decode_data(bytes: &[u8]) -> SynResult<Value> {
    msgpack::decode_exact(bytes)
        .map_err(|e| SynErr::new("StorageError", format!("bad stored node data: {e}")))
}

/// Applies a [`KeyFilter`] to index entries.
struct Matcher<'t> {
    reader: &'t LayerReader,
    filter: KeyFilter,
    stortype: u16,
    source: Source,
    array: bool,
}

impl Matcher<'_> {
    fn matches(&self, key: &[u8], buid: &Buid) -> SynResult<bool> {
        match &self.filter {
            KeyFilter::HexPrefix(text) => Ok(hex::encode(key).starts_with(text.as_str())),
            KeyFilter::IvalOverlap { min, max } => {
                Ok(key.len() == 16 && key[..8] < max[..] && key[8..] > min[..])
            }
            KeyFilter::Regex(regex) => {
                if let Some(text) = keys::text_from_key(self.stortype, key) {
                    return Ok(regex.is_match(&text));
                }
                Ok(self
                    .values(key, buid)?
                    .iter()
                    .any(|v| keys::regex_in(regex, v)))
            }
            KeyFilter::LongPrefix(prefix) => Ok(self
                .values(key, buid)?
                .iter()
                .any(|v| keys::value_has_prefix(v, prefix))),
        }
    }

    /// The stored values behind an entry: the value, or the array items with this key.
    fn values(&self, key: &[u8], buid: &Buid) -> SynResult<Vec<Value>> {
        let Some(valu) = self.reader.stored_value(buid, &self.source)? else {
            return Ok(Vec::new());
        };
        if !self.array {
            return Ok(vec![valu]);
        }
        let items = valu.as_array().unwrap_or_default();
        Ok(items
            .iter()
            .filter(|item| keys::index_key(item, self.stortype).is_ok_and(|k| k.as_slice() == key))
            .cloned()
            .collect())
    }
}

impl Layer {
    /// The storage node of `buid`: as the newest queued write left it, else as `snap` holds
    /// it, else, when committed writes have left memory since `snap` was taken, as a fresh
    /// snapshot does.
    pub(super) fn read_sode(&self, snap: &Snapshot, buid: &Buid) -> SynResult<Option<Sode>> {
        let inner = &self.inner;
        let mut fresh: Option<Snapshot> = None;
        loop {
            let snap = fresh.as_ref().unwrap_or(snap);
            match inner.pipeline.queued(buid, snap.since) {
                Queued::Sode(sode) => return Ok(sode),
                Queued::Stored => {
                    return match inner.dbs.bybuid.get(snap.txn(self)?, buid)? {
                        Some(bytes) => Sode::decode(bytes).map(Some),
                        None => Ok(None),
                    };
                }
                Queued::Behind => {}
            }
            fresh = Some(Snapshot::new(self));
        }
    }
}
