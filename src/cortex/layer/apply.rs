//! Applying nodeedits inside one LMDB write transaction: the sodes, every index, node data,
//! edges and form counts, keeping only the edits that changed something; or, planning
//! ([`Apply::plan`]), working out which edits change something and the storage nodes they
//! leave without writing anything.

use super::keys::{index_keys, is_array, write_index_key};
use super::sode::Sode;
use super::{Abrv, AbrvName, Abrvs, Dbs};
use crate::cortex::NameMap;
use crate::cortex::edits::{Buid, BuidMap, Edit, Ival, NodeEdit, stortype as st};
use crate::error::{SynErr, SynResult};
use crate::msgpack::{self, Value};
use crate::storage::{ReadTxn, Txn, WriteTxn, int64en, int64un};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::RwLock;

/// Check everything about the edits that does not depend on what is stored, so that applying
/// them can only fail on storage errors.
pub(super) fn validate(nodeedits: &[NodeEdit]) -> SynResult<()> {
    for ne in nodeedits {
        name_ok("form", &ne.form)?;
        for edit in &ne.edits {
            match edit {
                Edit::NodeAdd { valu, stortype } => {
                    index_keys(valu, *stortype)?;
                }
                Edit::NodeDel { .. } => {}
                Edit::PropSet {
                    prop,
                    valu,
                    stortype,
                    ..
                } => {
                    name_ok("prop", prop)?;
                    index_keys(valu, *stortype)?;
                }
                Edit::PropDel { prop, .. } => name_ok("prop", prop)?,
                Edit::TagSet { tag, .. } | Edit::TagDel { tag, .. } => name_ok("tag", tag)?,
                Edit::TagPropSet {
                    tag,
                    prop,
                    valu,
                    stortype,
                    ..
                } => {
                    name_ok("tag", tag)?;
                    name_ok("tag prop", prop)?;
                    index_keys(valu, *stortype)?;
                }
                Edit::TagPropDel { tag, prop, .. } => {
                    name_ok("tag", tag)?;
                    name_ok("tag prop", prop)?;
                }
                Edit::NodeDataSet { name, .. } | Edit::NodeDataDel { name, .. } => {
                    name_ok("node data name", name)?
                }
                Edit::EdgeAdd { verb, .. } | Edit::EdgeDel { verb, .. } => {
                    name_ok("edge verb", verb)?
                }
            }
        }
    }
    Ok(())
}

fn name_ok(what: &str, name: &str) -> SynResult<()> {
    if name.is_empty() || name.contains('\0') {
        return Err(SynErr::bad_arg(format!(
            "bad {what} name {name:?}: must be non-empty and without NUL"
        )));
    }
    Ok(())
}

/// The key of an edge in `edgesn1` (`n1, verb, 0, n2`) or `edgesn2` (`n2, verb, 0, n1`).
pub(super) fn edge_key(from: &Buid, verb: &str, to: &Buid) -> Vec<u8> {
    let mut key = Vec::with_capacity(65 + verb.len());
    key.extend_from_slice(from);
    key.extend_from_slice(verb.as_bytes());
    key.push(0);
    key.extend_from_slice(to);
    key
}

/// A sode being edited, and whether it must be written back.
struct Slot {
    sode: Option<Sode>,
    dirty: bool,
}

/// The storage node of a buid as the logged records leave it, applied to LMDB or not.
pub(super) type SodeSource<'a> = &'a dyn Fn(&Buid) -> SynResult<Option<Sode>>;

/// A read snapshot, opened when first asked for.
pub(super) type TxnSource<'a> = &'a dyn Fn() -> SynResult<&'a ReadTxn>;

/// What a planning [`Apply`] reads: storage nodes from `sode`, node data and edges (which
/// only writes that wait for LMDB change) from a read snapshot.
struct PlanSource<'a> {
    rtxn: TxnSource<'a>,
    sode: SodeSource<'a>,
}

/// One write transaction's worth of edits.
pub(super) struct Apply<'a, 'w> {
    dbs: &'a Dbs,
    /// `None` while planning.
    wtxn: Option<&'a mut WriteTxn<'w>>,
    plan: Option<PlanSource<'a>>,
    /// The layer's cache of abbreviations committed to LMDB.
    shared_abrvs: &'a RwLock<Abrvs>,
    /// Abbreviations this transaction read from LMDB or created (not in the shared cache).
    unshared_abrvs: Abrvs,
    /// Scratch space for the stored form of a name being looked up.
    name_buf: Vec<u8>,
    next_abrv: Option<u64>,
    slots: BuidMap<Slot>,
    index_ops: Vec<IndexOp>,
    op_bytes: Vec<u8>,
    counts: NameMap<i64>,
    /// Leave the index databases alone (while a bulk load defers them to
    /// [`super::bulk::build`]); abbreviations are still made in the same order.
    defer_indexes: bool,
}

impl<'a, 'w> Apply<'a, 'w> {
    pub(super) fn new(
        dbs: &'a Dbs,
        wtxn: &'a mut WriteTxn<'w>,
        shared_abrvs: &'a RwLock<Abrvs>,
        defer_indexes: bool,
    ) -> Self {
        Apply::with(dbs, Some(wtxn), None, shared_abrvs, defer_indexes)
    }

    fn with(
        dbs: &'a Dbs,
        wtxn: Option<&'a mut WriteTxn<'w>>,
        plan: Option<PlanSource<'a>>,
        shared_abrvs: &'a RwLock<Abrvs>,
        defer_indexes: bool,
    ) -> Self {
        Apply {
            dbs,
            wtxn,
            plan,
            shared_abrvs,
            unshared_abrvs: Abrvs::default(),
            name_buf: Vec::new(),
            next_abrv: None,
            slots: HashMap::default(),
            index_ops: Vec::new(),
            op_bytes: Vec::new(),
            counts: NameMap::default(),
            defer_indexes,
        }
    }

    /// An `Apply` that only plans: [`Apply::nodeedits`] works out the edits that change
    /// something against the storage nodes `sode` gives, and
    /// [`Apply::planned`] tells the storage nodes they leave. It writes nothing, so it takes
    /// no node data or edge edits and no node deletions (those read and write other
    /// databases: see [`plannable`]).
    pub(super) fn plan(
        dbs: &'a Dbs,
        rtxn: TxnSource<'a>,
        sode: SodeSource<'a>,
        shared_abrvs: &'a RwLock<Abrvs>,
    ) -> Self {
        let plan = PlanSource { rtxn, sode };
        // No index changes are queued: planning sets `defer_indexes`.
        Apply::with(dbs, None, Some(plan), shared_abrvs, true)
    }

    /// The storage nodes a planning `Apply`'s edits leave, by buid (`None`: removed).
    pub(super) fn planned(&mut self) -> SynResult<Vec<(Buid, Option<Sode>)>> {
        let slots = std::mem::take(&mut self.slots);
        let mut out = Vec::with_capacity(slots.len());
        for (buid, slot) in slots {
            if !slot.dirty {
                continue;
            }
            let sode = match slot.sode {
                Some(sode) if !sode.is_bare() || self.has_data_or_edges(&buid)? => Some(sode),
                _ => None,
            };
            out.push((buid, sode));
        }
        // In buid order, as `finish` gives them.
        out.sort_unstable_by_key(|(buid, _)| *buid);
        Ok(out)
    }

    /// The write transaction; an error while planning (nothing may be written then).
    fn w(&mut self) -> SynResult<&mut WriteTxn<'w>> {
        match self.wtxn.as_deref_mut() {
            Some(wtxn) => Ok(wtxn),
            None => Err(SynErr::new(
                "StorageError",
                "a planned write cannot change node data, edges or delete nodes",
            )),
        }
    }

    /// Start from storage nodes known to be what LMDB holds for their buids (the last batch's
    /// writes), so the edits of those buids need not read them.
    pub(super) fn start_from(&mut self, sodes: Vec<(Buid, Option<Sode>)>) {
        for (buid, sode) in sodes {
            self.slots.insert(buid, Slot { sode, dirty: false });
        }
    }

    /// The abbreviations this transaction read from LMDB or created, for the shared cache
    /// once it commits, and whether it created any (wrote them to LMDB).
    pub(super) fn take_abrvs(&mut self) -> (Abrvs, bool) {
        (
            std::mem::take(&mut self.unshared_abrvs),
            self.next_abrv.is_some(),
        )
    }

    /// The transaction, for writes outside the edits (log positions, the applied offset).
    pub(super) fn wtxn(&mut self) -> SynResult<&mut WriteTxn<'w>> {
        self.w()
    }

    /// Apply nodeedits; returns those that changed something, one per buid in order of first
    /// appearance (as Synapse merges them), with old values and merged values filled in.
    ///
    /// `tick` is the `.created` time for added nodes; `replay` applies logged edits as they
    /// are, without adding `.created` again.
    pub(super) fn nodeedits(
        &mut self,
        nodeedits: &[NodeEdit],
        tick: i64,
        replay: bool,
    ) -> SynResult<Vec<NodeEdit>> {
        let mut out: Vec<NodeEdit> = Vec::new();
        let mut by_buid: BuidMap<usize> = HashMap::default();
        for ne in nodeedits {
            let mut slot = self.take_slot(&ne.buid)?;
            let mut changes = Vec::new();
            for edit in &ne.edits {
                let changed = self.edit(ne, &mut slot.sode, edit, tick, replay, &mut changes)?;
                slot.dirty |= changed;
            }
            self.slots.insert(ne.buid, slot);
            let at = *by_buid.entry(ne.buid).or_insert_with(|| {
                out.push(NodeEdit {
                    buid: ne.buid,
                    form: ne.form.clone(),
                    edits: Vec::new(),
                });
                out.len() - 1
            });
            out[at].edits.extend(changes);
        }
        out.retain(|ne| !ne.edits.is_empty());
        Ok(out)
    }

    /// Queue the index entries of a stored node: the same entries the edits that made it
    /// queued (for rebuilding the indexes from the storage nodes).
    pub(super) fn index_sode(&mut self, buid: &Buid, sode: &Sode) -> SynResult<()> {
        let form = sode.form.as_str();
        if let Some((valu, stortype)) = &sode.valu {
            let abrv = self.abrv(AbrvName::Form(form))?;
            self.valu_ops(&[abrv], valu, *stortype, buid, true)?;
        }
        for (prop, valu, stortype) in &sode.props {
            let abrvs = self.prop_abrvs(form, prop)?;
            self.valu_ops(&abrvs, valu, *stortype, buid, true)?;
        }
        for (tag, _) in &sode.tags {
            self.tag_op(tag, form, buid, true)?;
        }
        for (tag, prop, valu, stortype) in &sode.tagprops {
            let abrvs = self.tagprop_abrvs(form, tag, prop)?;
            self.item_ops(Index::TagProp, &abrvs, valu, *stortype, buid, true)?;
        }
        Ok(())
    }

    /// Take the queued index changes, with the bytes their keys lie in.
    pub(super) fn take_index_ops(&mut self) -> (Vec<IndexOp>, Vec<u8>) {
        (
            std::mem::take(&mut self.index_ops),
            std::mem::take(&mut self.op_bytes),
        )
    }

    /// Write the queued index changes, the edited sodes and the form counts, each in key
    /// order. A sode whose buid sorts after every stored one is appended.
    /// Returns the edited sodes as written, by buid (`None`: the buid's sode was removed).
    pub(super) fn finish(&mut self) -> SynResult<Vec<(Buid, Option<Sode>)>> {
        let (mut ops, bytes) = self.take_index_ops();
        let slots = std::mem::take(&mut self.slots);
        let counts = std::mem::take(&mut self.counts);
        let dbs = self.dbs;
        let wtxn = self.w()?;
        // Stable: changes to one entry keep their order.
        ops.sort_by(|a, b| op_order(&bytes, a, b));
        for op in &ops {
            let db = op.index.db(dbs);
            let key = &bytes[op.key.clone()];
            if op.put {
                db.put(wtxn, key, &op.buid)?;
            } else {
                db.delete_dup(wtxn, key, &op.buid)?;
            }
        }
        let mut slots: Vec<(Buid, Slot)> = slots.into_iter().filter(|(_, s)| s.dirty).collect();
        slots.sort_unstable_by_key(|(buid, _)| *buid);
        let mut last: Option<Vec<u8>> = dbs.bybuid.last(wtxn)?.map(|(k, _)| k.to_vec());
        let mut written = Vec::with_capacity(slots.len());
        for (buid, slot) in slots {
            match slot.sode {
                Some(sode) if !sode.is_bare() || data_or_edges(dbs, wtxn, &buid)? => {
                    if last.as_deref().is_none_or(|l| buid.as_slice() > l) {
                        dbs.bybuid.append(wtxn, &buid, &sode.encode())?;
                        last = Some(buid.to_vec());
                    } else {
                        dbs.bybuid.put(wtxn, &buid, &sode.encode())?;
                    }
                    written.push((buid, Some(sode)));
                }
                _ => {
                    dbs.bybuid.delete(wtxn, &buid)?;
                    written.push((buid, None));
                }
            }
        }
        for (form, delta) in counts {
            if delta == 0 {
                continue;
            }
            let key = form.as_bytes();
            let old = dbs.counts.get(wtxn, key)?.map_or(0, int64un);
            let new = old.saturating_add_signed(delta);
            dbs.counts.put(wtxn, key, &int64en(new))?;
        }
        Ok(written)
    }

    /// Change the node count of a form (its name is copied once a transaction).
    fn count(&mut self, form: &str, delta: i64) {
        match self.counts.get_mut(form) {
            Some(count) => *count += delta,
            None => {
                self.counts.insert(form.to_owned(), delta);
            }
        }
    }

    fn take_slot(&mut self, buid: &Buid) -> SynResult<Slot> {
        if let Some(slot) = self.slots.remove(buid) {
            return Ok(slot);
        }
        let bytes = match (&self.wtxn, &self.plan) {
            (Some(wtxn), _) => self.dbs.bybuid.get(&**wtxn, buid)?,
            (None, Some(plan)) => {
                let sode = (plan.sode)(buid)?;
                return Ok(Slot { sode, dirty: false });
            }
            (None, None) => None,
        };
        let sode = match bytes {
            Some(bytes) => Some(Sode::decode(bytes)?),
            None => None,
        };
        Ok(Slot { sode, dirty: false })
    }

    fn has_data_or_edges(&self, buid: &Buid) -> SynResult<bool> {
        match (&self.wtxn, &self.plan) {
            (Some(wtxn), _) => data_or_edges(self.dbs, &**wtxn, buid),
            (None, Some(plan)) => data_or_edges(self.dbs, (plan.rtxn)()?, buid),
            (None, None) => Ok(false),
        }
    }

    /// The abbreviation of a name, created if new. Planning keeps no index keys, so there it
    /// is never looked up.
    pub(super) fn abrv(&mut self, name: AbrvName<'_>) -> SynResult<Abrv> {
        if self.wtxn.is_none() {
            return Ok([0; 8]);
        }
        name.write_key(&mut self.name_buf);
        let key = self.name_buf.as_slice();
        if let Some(abrv) = self.unshared_abrvs.get(key) {
            return Ok(*abrv);
        }
        let cached = self
            .shared_abrvs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied();
        if let Some(abrv) = cached {
            return Ok(abrv);
        }
        let key = key.to_vec();
        let dbs = self.dbs;
        let next_abrv = self.next_abrv;
        let wtxn = self.w()?;
        let abrv = match dbs.abrv.get(wtxn, &key)? {
            Some(bytes) => bytes
                .try_into()
                .map_err(|_| SynErr::new("StorageError", "bad stored abbreviation".to_string()))?,
            None => {
                let next = match next_abrv {
                    Some(next) => next,
                    None => match dbs.abrvrev.last(wtxn)? {
                        Some((last, _)) => int64un(last) + 1,
                        None => 0,
                    },
                };
                let abrv = int64en(next);
                dbs.abrv.put(wtxn, &key, &abrv)?;
                dbs.abrvrev.put(wtxn, &abrv, &key)?;
                self.next_abrv = Some(next + 1);
                abrv
            }
        };
        self.unshared_abrvs.insert(key, abrv);
        Ok(abrv)
    }

    fn edit(
        &mut self,
        ne: &NodeEdit,
        sode: &mut Option<Sode>,
        edit: &Edit,
        tick: i64,
        replay: bool,
        out: &mut Vec<Edit>,
    ) -> SynResult<bool> {
        let buid = &ne.buid;
        let form = ne.form.as_str();
        let new_sode = || Sode {
            form: form.to_owned(),
            ..Sode::default()
        };
        match edit {
            Edit::NodeAdd { valu, stortype } => {
                let sode = sode.get_or_insert_with(new_sode);
                if matches!(&sode.valu, Some((v, t)) if v == valu && t == stortype) {
                    return Ok(false);
                }
                let abrv = self.abrv(AbrvName::Form(form))?;
                match sode.valu.take() {
                    Some((old, oldt)) => self.valu_ops(&[abrv], &old, oldt, buid, false)?,
                    None => self.count(form, 1),
                }
                self.valu_ops(&[abrv], valu, *stortype, buid, true)?;
                sode.valu = Some((valu.clone(), *stortype));
                out.push(edit.clone());
                if !replay {
                    self.prop_set(
                        form,
                        buid,
                        sode,
                        ".created",
                        &Value::from(tick),
                        st::MINTIME,
                        out,
                    )?;
                }
                Ok(true)
            }
            Edit::NodeDel { .. } => {
                let Some((valu, stortype)) = sode.as_mut().and_then(|s| s.valu.take()) else {
                    return Ok(false);
                };
                let abrv = self.abrv(AbrvName::Form(form))?;
                self.valu_ops(&[abrv], &valu, stortype, buid, false)?;
                self.count(form, -1);
                self.wipe_data_and_edges(buid)?;
                out.push(Edit::NodeDel { valu, stortype });
                Ok(true)
            }
            Edit::PropSet {
                prop,
                valu,
                stortype,
                ..
            } => {
                let sode = sode.get_or_insert_with(new_sode);
                self.prop_set(form, buid, sode, prop, valu, *stortype, out)
            }
            Edit::PropDel { prop, .. } => {
                let Some(sode) = sode.as_mut() else {
                    return Ok(false);
                };
                let Some(at) = sode.props.iter().position(|(n, _, _)| n == prop) else {
                    return Ok(false);
                };
                let (_, oldv, oldt) = sode.props.remove(at);
                let abrvs = self.prop_abrvs(form, prop)?;
                self.valu_ops(&abrvs, &oldv, oldt, buid, false)?;
                out.push(Edit::PropDel {
                    prop: prop.clone(),
                    oldv,
                    stortype: oldt,
                });
                Ok(true)
            }
            Edit::TagSet { tag, valu, .. } => {
                let sode = sode.get_or_insert_with(new_sode);
                let old = sode.tag(tag);
                let mut valu = *valu;
                match old {
                    Some(old) => {
                        if old != (None, None) && valu != (None, None) {
                            valu = merge_ival(old, valu);
                        }
                        if old == valu {
                            return Ok(false);
                        }
                        let entry = sode.tags.iter_mut().find(|(n, _)| n == tag);
                        if let Some((_, ival)) = entry {
                            *ival = valu;
                        }
                    }
                    None => {
                        self.tag_op(tag, form, buid, true)?;
                        sode.tags.push((tag.clone(), valu));
                    }
                }
                out.push(Edit::TagSet {
                    tag: tag.clone(),
                    valu,
                    oldv: old,
                });
                Ok(true)
            }
            Edit::TagDel { tag, .. } => {
                let Some(sode) = sode.as_mut() else {
                    return Ok(false);
                };
                let Some(at) = sode.tags.iter().position(|(n, _)| n == tag) else {
                    return Ok(false);
                };
                let (_, oldv) = sode.tags.remove(at);
                self.tag_op(tag, form, buid, false)?;
                out.push(Edit::TagDel {
                    tag: tag.clone(),
                    oldv,
                });
                Ok(true)
            }
            Edit::TagPropSet {
                tag,
                prop,
                valu,
                stortype,
                ..
            } => {
                let sode = sode.get_or_insert_with(new_sode);
                let abrvs = self.tagprop_abrvs(form, tag, prop)?;
                let at = sode
                    .tagprops
                    .iter()
                    .position(|(t, p, _, _)| t == tag && p == prop);
                let mut valu = valu.clone();
                let mut oldv = Value::Nil;
                if let Some(at) = at {
                    let (_, _, old, oldt) = &sode.tagprops[at];
                    valu = merge_valu(*stortype, old, valu);
                    if valu == *old && stortype == oldt {
                        return Ok(false);
                    }
                    let (old, oldt) = (old.clone(), *oldt);
                    self.item_ops(Index::TagProp, &abrvs, &old, oldt, buid, false)?;
                    oldv = old.clone();
                }
                self.item_ops(Index::TagProp, &abrvs, &valu, *stortype, buid, true)?;
                let entry = (tag.clone(), prop.clone(), valu.clone(), *stortype);
                match at {
                    Some(at) => sode.tagprops[at] = entry,
                    None => sode.tagprops.push(entry),
                }
                out.push(Edit::TagPropSet {
                    tag: tag.clone(),
                    prop: prop.clone(),
                    valu,
                    oldv,
                    stortype: *stortype,
                });
                Ok(true)
            }
            Edit::TagPropDel { tag, prop, .. } => {
                let Some(sode) = sode.as_mut() else {
                    return Ok(false);
                };
                let found = sode
                    .tagprops
                    .iter()
                    .position(|(t, p, _, _)| t == tag && p == prop);
                let Some(at) = found else {
                    return Ok(false);
                };
                let (_, _, oldv, oldt) = sode.tagprops.remove(at);
                let abrvs = self.tagprop_abrvs(form, tag, prop)?;
                self.item_ops(Index::TagProp, &abrvs, &oldv, oldt, buid, false)?;
                out.push(Edit::TagPropDel {
                    tag: tag.clone(),
                    prop: prop.clone(),
                    oldv,
                    stortype: oldt,
                });
                Ok(true)
            }
            Edit::NodeDataSet { name, valu, .. } => {
                let key = self.data_key(buid, name)?;
                let bytes = valu.to_bytes();
                let dbs = self.dbs;
                let wtxn = self.w()?;
                let oldv = match dbs.nodedata.get(wtxn, &key)? {
                    Some(old) if old == bytes.as_slice() => return Ok(false),
                    Some(old) => decode_stored(old)?,
                    None => Value::Nil,
                };
                dbs.nodedata.put(wtxn, &key, &bytes)?;
                sode.get_or_insert_with(new_sode);
                out.push(Edit::NodeDataSet {
                    name: name.clone(),
                    valu: valu.clone(),
                    oldv,
                });
                Ok(true)
            }
            Edit::NodeDataDel { name, .. } => {
                let key = self.data_key(buid, name)?;
                let dbs = self.dbs;
                let wtxn = self.w()?;
                let Some(old) = dbs.nodedata.get(wtxn, &key)? else {
                    return Ok(false);
                };
                let oldv = decode_stored(old)?;
                dbs.nodedata.delete(wtxn, &key)?;
                out.push(Edit::NodeDataDel {
                    name: name.clone(),
                    oldv,
                });
                Ok(true)
            }
            Edit::EdgeAdd { verb, n2 } => {
                let n1key = edge_key(buid, verb, n2);
                let dbs = self.dbs;
                let wtxn = self.w()?;
                if dbs.edgesn1.get(wtxn, &n1key)?.is_some() {
                    return Ok(false);
                }
                dbs.edgesn1.put(wtxn, &n1key, &[])?;
                dbs.edgesn2.put(wtxn, &edge_key(n2, verb, buid), &[])?;
                sode.get_or_insert_with(new_sode);
                out.push(edit.clone());
                Ok(true)
            }
            Edit::EdgeDel { verb, n2 } => {
                let dbs = self.dbs;
                let wtxn = self.w()?;
                if !dbs.edgesn1.delete(wtxn, &edge_key(buid, verb, n2))? {
                    return Ok(false);
                }
                dbs.edgesn2.delete(wtxn, &edge_key(n2, verb, buid))?;
                out.push(edit.clone());
                Ok(true)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prop_set(
        &mut self,
        form: &str,
        buid: &Buid,
        sode: &mut Sode,
        prop: &str,
        valu: &Value,
        stortype: u16,
        out: &mut Vec<Edit>,
    ) -> SynResult<bool> {
        let abrvs = self.prop_abrvs(form, prop)?;
        let at = sode.props.iter().position(|(n, _, _)| n == prop);
        let mut valu = valu.clone();
        let mut oldv = Value::Nil;
        if let Some(at) = at {
            let (_, old, oldt) = &sode.props[at];
            valu = merge_valu(stortype, old, valu);
            if valu == *old && stortype == *oldt {
                return Ok(false);
            }
            self.valu_ops(&abrvs, old, *oldt, buid, false)?;
            oldv = old.clone();
        }
        self.valu_ops(&abrvs, &valu, stortype, buid, true)?;
        let entry = (prop.to_owned(), valu.clone(), stortype);
        match at {
            Some(at) => sode.props[at] = entry,
            None => sode.props.push(entry),
        }
        out.push(Edit::PropSet {
            prop: prop.to_owned(),
            valu,
            oldv,
            stortype,
        });
        Ok(true)
    }

    /// A prop is indexed under its form's name, and universal props (`.created`) also under
    /// the bare prop name.
    fn prop_abrvs(&mut self, form: &str, prop: &str) -> SynResult<Vec<Abrv>> {
        let mut abrvs = vec![self.abrv(AbrvName::Prop(form, prop))?];
        if prop.starts_with('.') {
            abrvs.push(self.abrv(AbrvName::Univ(prop))?);
        }
        Ok(abrvs)
    }

    fn tagprop_abrvs(&mut self, form: &str, tag: &str, prop: &str) -> SynResult<Vec<Abrv>> {
        Ok(vec![
            self.abrv(AbrvName::TagProp(None, tag, prop))?,
            self.abrv(AbrvName::TagProp(Some(form), tag, prop))?,
        ])
    }

    /// Queue the `bytag` entry of a node's tag: `tagabrv + formabrv -> buid`.
    fn tag_op(&mut self, tag: &str, form: &str, buid: &Buid, put: bool) -> SynResult<()> {
        let tagabrv = self.abrv(AbrvName::Tag(tag))?;
        let formabrv = self.abrv(AbrvName::Form(form))?;
        self.queue(Index::Tag, &[tagabrv], buid, put, &|out| {
            out.extend_from_slice(&formabrv);
            Ok(())
        })
    }

    fn data_key(&mut self, buid: &Buid, name: &str) -> SynResult<Vec<u8>> {
        let mut key = buid.to_vec();
        key.extend(self.abrv(AbrvName::Data(name))?);
        Ok(key)
    }

    /// Index (`put`) or unindex a form or prop value: arrays by item (`byarray`) and as a
    /// whole (`byprop`, MSGP).
    fn valu_ops(
        &mut self,
        abrvs: &[Abrv],
        valu: &Value,
        stortype: u16,
        buid: &Buid,
        put: bool,
    ) -> SynResult<()> {
        if is_array(stortype) {
            self.item_ops(Index::Array, abrvs, valu, stortype, buid, put)?;
            self.queue(Index::Prop, abrvs, buid, put, &|out| {
                write_index_key(valu, st::MSGP, out)
            })
        } else {
            self.item_ops(Index::Prop, abrvs, valu, stortype, buid, put)
        }
    }

    /// Queue the keys of a scalar, or of each item of an array.
    fn item_ops(
        &mut self,
        index: Index,
        abrvs: &[Abrv],
        valu: &Value,
        stortype: u16,
        buid: &Buid,
        put: bool,
    ) -> SynResult<()> {
        if !is_array(stortype) {
            return self.queue(index, abrvs, buid, put, &|out| {
                write_index_key(valu, stortype, out)
            });
        }
        let base = stortype & !st::ARRAY;
        let items = valu
            .as_array()
            .ok_or_else(|| SynErr::bad_arg(format!("array value expected: {valu}")))?;
        for item in items {
            self.queue(index, abrvs, buid, put, &|out| {
                write_index_key(item, base, out)
            })?;
        }
        Ok(())
    }

    /// Queue `abrv + key` index changes, for each abbreviation; [`Apply::finish`] writes them
    /// in key order, which keeps LMDB's cursor on neighbouring pages (nothing reads these
    /// indexes while edits are applied). Keys live in one buffer to spare an allocation each.
    fn queue(
        &mut self,
        index: Index,
        abrvs: &[Abrv],
        buid: &Buid,
        put: bool,
        write_key: &dyn Fn(&mut Vec<u8>) -> SynResult<()>,
    ) -> SynResult<()> {
        if self.defer_indexes {
            return Ok(());
        }
        let mut first: Option<std::ops::Range<usize>> = None;
        for abrv in abrvs {
            let start = self.op_bytes.len();
            self.op_bytes.extend_from_slice(abrv);
            let key_start = self.op_bytes.len();
            match &first {
                None => {
                    write_key(&mut self.op_bytes)?;
                    first = Some(key_start..self.op_bytes.len());
                }
                Some(key) => self.op_bytes.extend_from_within(key.clone()),
            }
            self.index_ops.push(IndexOp {
                index,
                key: start..self.op_bytes.len(),
                buid: *buid,
                put,
            });
        }
        Ok(())
    }

    /// A deleted node loses its node data and the edges it starts (as in Synapse).
    fn wipe_data_and_edges(&mut self, buid: &Buid) -> SynResult<()> {
        let dbs = self.dbs;
        let wtxn = self.w()?;
        let data_keys = collect_keys(dbs.nodedata.prefix(wtxn, buid)?)?;
        for key in data_keys {
            dbs.nodedata.delete(wtxn, &key)?;
        }
        let edge_keys = collect_keys(dbs.edgesn1.prefix(wtxn, buid)?)?;
        for key in edge_keys {
            dbs.edgesn1.delete(wtxn, &key)?;
            // key = n1 (32) + verb + 0 + n2 (32); its mirror is n2 + verb + 0 + n1.
            let (verb, n2) = key[32..].split_at(key.len() - 64);
            let mut mirror = n2.to_vec();
            mirror.extend_from_slice(verb);
            mirror.extend_from_slice(buid);
            dbs.edgesn2.delete(wtxn, &mirror)?;
        }
        Ok(())
    }
}

/// The dupsort indexes of `key -> buid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Index {
    Prop,
    Array,
    Tag,
    TagProp,
}

impl Index {
    /// Every index, in the order index changes are written.
    pub(super) const ALL: [Index; 4] = [Index::Prop, Index::Array, Index::Tag, Index::TagProp];

    pub(super) fn db(self, dbs: &Dbs) -> &crate::storage::Db {
        match self {
            Index::Prop => &dbs.byprop,
            Index::Array => &dbs.byarray,
            Index::Tag => &dbs.bytag,
            Index::TagProp => &dbs.bytagprop,
        }
    }
}

/// A queued index change.
#[derive(Clone, Debug)]
pub(super) struct IndexOp {
    pub(super) index: Index,
    /// Where the full key lies in the bytes it was queued with ([`Apply::op_bytes`]).
    pub(super) key: std::ops::Range<usize>,
    pub(super) buid: Buid,
    pub(super) put: bool,
}

/// The order index changes are written in: by index, key, then buid, which keeps LMDB's
/// cursor on neighbouring pages (and lets a bulk build append).
pub(super) fn op_order(bytes: &[u8], a: &IndexOp, b: &IndexOp) -> Ordering {
    (a.index, &bytes[a.key.clone()], &a.buid).cmp(&(b.index, &bytes[b.key.clone()], &b.buid))
}

/// Whether `buid` has node data or edges starting from it in `txn`.
fn data_or_edges(dbs: &Dbs, txn: &impl Txn, buid: &Buid) -> SynResult<bool> {
    Ok(dbs.nodedata.prefix(txn, buid)?.next().is_some()
        || dbs.edgesn1.prefix(txn, buid)?.next().is_some())
}

/// Whether a planning [`Apply`] can take these edits: storage node changes only.
pub(super) fn plannable(nodeedits: &[NodeEdit]) -> bool {
    nodeedits.iter().flat_map(|ne| &ne.edits).all(|edit| {
        !matches!(
            edit,
            Edit::NodeDel { .. }
                | Edit::NodeDataSet { .. }
                | Edit::NodeDataDel { .. }
                | Edit::EdgeAdd { .. }
                | Edit::EdgeDel { .. }
        )
    })
}

fn collect_keys(entries: crate::storage::Entries<'_>) -> SynResult<Vec<Vec<u8>>> {
    entries
        .map(|e| e.map(|(k, _)| k.to_vec()).map_err(SynErr::from))
        .collect()
}

fn decode_stored(bytes: &[u8]) -> SynResult<Value> {
    msgpack::decode_exact(bytes)
        .map_err(|e| SynErr::new("StorageError", format!("bad stored node data: {e}")))
}

/// Setting a value over an existing one: intervals widen, MINTIME keeps the smaller and
/// MAXTIME the larger value; anything else is replaced.
fn merge_valu(stortype: u16, old: &Value, new: Value) -> Value {
    match stortype {
        st::IVAL => {
            let ints = |v: &Value| -> Option<[i64; 2]> {
                match v.as_array()? {
                    [a, b] => Some([a.as_i64()?, b.as_i64()?]),
                    _ => None,
                }
            };
            match (ints(old), ints(&new)) {
                (Some(o), Some(n)) => {
                    let all = [o[0], o[1], n[0], n[1]];
                    let min = all.iter().min().copied().unwrap_or(n[0]);
                    let max = all.iter().max().copied().unwrap_or(n[1]);
                    Value::Array(vec![Value::from(min), Value::from(max)])
                }
                _ => new,
            }
        }
        st::MINTIME | st::MAXTIME => match (old.as_i64(), new.as_i64()) {
            (Some(o), Some(n)) if stortype == st::MINTIME => Value::from(o.min(n)),
            (Some(o), Some(n)) => Value::from(o.max(n)),
            _ => new,
        },
        _ => new,
    }
}

/// A timed tag set again widens to cover both intervals.
fn merge_ival(old: Ival, new: Ival) -> Ival {
    let pick = |a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64| match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    };
    (pick(old.0, new.0, i64::min), pick(old.1, new.1, i64::max))
}
