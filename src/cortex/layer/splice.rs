//! Splices: the 2.x layer's flattening of the edit log into `(name, props)` change records.

use super::Layer;
use crate::cortex::edits::{Edit, ival_to_value};
use crate::error::SynResult;
use crate::msgpack::Value;

/// Where a splice comes from: `(log offset, nodeedit index, edit index)`.
pub type SpliceOffs = (u64, u64, u64);

/// One splice: its offsets and `(name, props)`.
pub type Splice = (SpliceOffs, (String, Value));

/// Synapse's `Layer.splices(offs, size)`: splices at or after `offs`, at most `size` of them.
///
/// Node data and edge edits make no splices. Every splice carries `time`, `user` (and `prov`
/// when the meta has one) and `ndef`; the primary value of an edit without a `node:add` or
/// `node:del` before it in its nodeedit is read from the layer as it is now.
pub(super) fn splices(
    layer: &Layer,
    offs: SpliceOffs,
    size: Option<usize>,
) -> SynResult<Vec<Splice>> {
    let mut out = Vec::new();
    if size == Some(0) {
        return Ok(out);
    }
    let reader = layer.reader()?;
    for entry in layer.edits_from(offs.0)? {
        let entry = entry?;
        let meta_field = |name: &str| entry.meta.get(name).cloned().unwrap_or(Value::Nil);
        let (time, user, prov) = (meta_field("time"), meta_field("user"), meta_field("prov"));
        for (nodeoffs, ne) in entry.edits.iter().enumerate() {
            let mut formvalu: Option<Value> = None;
            for (editoffs, edit) in ne.edits.iter().enumerate() {
                let name = match edit {
                    Edit::NodeDataSet { .. }
                    | Edit::NodeDataDel { .. }
                    | Edit::EdgeAdd { .. }
                    | Edit::EdgeDel { .. } => continue,
                    Edit::NodeAdd { .. } => "node:add",
                    Edit::NodeDel { .. } => "node:del",
                    Edit::PropSet { .. } => "prop:set",
                    Edit::PropDel { .. } => "prop:del",
                    Edit::TagSet { .. } => "tag:add",
                    Edit::TagDel { .. } => "tag:del",
                    Edit::TagPropSet { .. } => "tag:prop:set",
                    Edit::TagPropDel { .. } => "tag:prop:del",
                };
                if let Edit::NodeAdd { valu, .. } | Edit::NodeDel { valu, .. } = edit {
                    formvalu = Some(valu.clone());
                }
                let spliceoffs = (entry.offset, nodeoffs as u64, editoffs as u64);
                if spliceoffs < offs {
                    continue;
                }
                let valu = match &formvalu {
                    Some(valu) => valu.clone(),
                    None => {
                        let current = reader.sode(&ne.buid)?.and_then(|s| s.valu);
                        let valu = current.map_or(Value::Nil, |(v, _)| v);
                        formvalu = Some(valu.clone());
                        valu
                    }
                };
                let mut props = vec![("time", time.clone()), ("user", user.clone())];
                if !prov.is_nil() {
                    props.push(("prov", prov.clone()));
                }
                let ndef = Value::Array(vec![Value::from(ne.form.as_str()), valu]);
                props.push(("ndef", ndef));
                props.extend(splice_fields(edit));
                out.push((spliceoffs, (name.to_owned(), Value::map(props))));
                if size.is_some_and(|size| out.len() >= size) {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The fields a splice adds for its edit.
fn splice_fields(edit: &Edit) -> Vec<(&'static str, Value)> {
    let s = |text: &str| Value::from(text);
    match edit {
        Edit::PropSet {
            prop, valu, oldv, ..
        } => vec![
            ("prop", s(prop)),
            ("valu", valu.clone()),
            ("oldv", oldv.clone()),
        ],
        Edit::PropDel { prop, oldv, .. } => vec![("prop", s(prop)), ("valu", oldv.clone())],
        Edit::TagSet { tag, valu, oldv } => vec![
            ("tag", s(tag)),
            ("valu", ival_to_value(valu)),
            ("oldv", oldv.as_ref().map_or(Value::Nil, ival_to_value)),
        ],
        Edit::TagDel { tag, oldv } => vec![("tag", s(tag)), ("valu", ival_to_value(oldv))],
        Edit::TagPropSet {
            tag,
            prop,
            valu,
            oldv,
            ..
        } => vec![
            ("tag", s(tag)),
            ("prop", s(prop)),
            ("valu", valu.clone()),
            ("oldv", oldv.clone()),
        ],
        Edit::TagPropDel {
            tag, prop, oldv, ..
        } => vec![("tag", s(tag)), ("prop", s(prop)), ("valu", oldv.clone())],
        _ => Vec::new(),
    }
}
