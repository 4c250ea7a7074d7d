//! Nodeedits: the unit of change in a cortex, with Synapse's wire shape and edit numbers.
//!
//! A nodeedit is `(buid, form, edits)` and an edit is `(type, info, subedits)`. Layers apply
//! them, the edit log stores the ones that changed something, storm streams them to clients,
//! and the LayerApi takes them from other cortexes; all of these use these types.

use crate::error::{SynErr, SynResult};
use crate::msgpack::{self, Value};

/// A 32-byte node identifier: `sha256(msgpack((form, norm)))`.
pub type Buid = [u8; 32];

/// Hashes a buid by its first 8 bytes: buids are SHA-256 digests, already uniform. Only for
/// maps keyed by [`Buid`].
#[derive(Clone, Copy, Default)]
pub struct BuidHash;

impl std::hash::BuildHasher for BuidHash {
    type Hasher = BuidHasher;

    fn build_hasher(&self) -> BuidHasher {
        BuidHasher(0)
    }
}

/// A map keyed by buid, hashed by [`BuidHash`].
pub type BuidMap<V> = std::collections::HashMap<Buid, V, BuidHash>;

/// The hasher of [`BuidHash`].
pub struct BuidHasher(u64);

impl std::hash::Hasher for BuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(word) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*word);
        }
    }

    /// The length prefix a `[u8; 32]` writes first is the same for every buid.
    fn write_usize(&mut self, _: usize) {}
}

/// A buid as Synapse's iden: 64 lowercase hex digits (a table lookup per byte; the `hex`
/// crate's `encode` pushes one char at a time, which shows in message building).
pub fn iden(buid: &Buid) -> String {
    let mut out = vec![0u8; 64];
    // Room for exactly 32 bytes, and hex digits are ASCII: neither can fail.
    let _ = hex::encode_to_slice(buid, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Synapse's storage types: how a value is laid out in an index.
pub mod stortype {
    pub const UTF8: u16 = 1;
    pub const U8: u16 = 2;
    pub const U16: u16 = 3;
    pub const U32: u16 = 4;
    pub const U64: u16 = 5;
    pub const I8: u16 = 6;
    pub const I16: u16 = 7;
    pub const I32: u16 = 8;
    pub const I64: u16 = 9;
    pub const GUID: u16 = 10;
    pub const TIME: u16 = 11;
    pub const IVAL: u16 = 12;
    pub const MSGP: u16 = 13;
    pub const LATLONG: u16 = 14;
    pub const LOC: u16 = 15;
    pub const TAG: u16 = 16;
    pub const FQDN: u16 = 17;
    pub const IPV6: u16 = 18;
    pub const U128: u16 = 19;
    pub const I128: u16 = 20;
    pub const MINTIME: u16 = 21;
    pub const FLOAT64: u16 = 22;
    pub const HUGENUM: u16 = 23;
    pub const MAXTIME: u16 = 24;
    pub const NDEF: u16 = 25;
    /// Set on an array of the base stortype.
    pub const ARRAY: u16 = 0x8000;
}

/// A tag's time interval: `(min, max)` in epoch milliseconds, `(None, None)` when untimed.
pub type Ival = (Option<i64>, Option<i64>);

/// Encode an interval as Synapse does: a two-item array of ints or `None`s.
pub fn ival_to_value(ival: &Ival) -> Value {
    Value::Array(vec![Value::from(ival.0), Value::from(ival.1)])
}

/// Decode an interval.
pub fn ival_from_value(v: &Value) -> SynResult<Ival> {
    let part = |p: &Value| match p {
        Value::Nil => Ok(None),
        other => other
            .as_i64()
            .map(Some)
            .ok_or_else(|| SynErr::bad_arg(format!("bad interval bound {other}"))),
    };
    match v.as_array() {
        Some([a, b]) => Ok((part(a)?, part(b)?)),
        _ => Err(SynErr::bad_arg(format!("bad interval {v}"))),
    }
}

/// One change to one node.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// 0: add the node.
    NodeAdd { valu: Value, stortype: u16 },
    /// 1: delete the node.
    NodeDel { valu: Value, stortype: u16 },
    /// 2: set a secondary or universal prop (`.created`, `asn`).
    PropSet {
        prop: String,
        valu: Value,
        oldv: Value,
        stortype: u16,
    },
    /// 3: delete a prop.
    PropDel {
        prop: String,
        oldv: Value,
        stortype: u16,
    },
    /// 4: set a tag.
    TagSet {
        tag: String,
        valu: Ival,
        oldv: Option<Ival>,
    },
    /// 5: delete a tag.
    TagDel { tag: String, oldv: Ival },
    /// 6: set a tag prop.
    TagPropSet {
        tag: String,
        prop: String,
        valu: Value,
        oldv: Value,
        stortype: u16,
    },
    /// 7: delete a tag prop.
    TagPropDel {
        tag: String,
        prop: String,
        oldv: Value,
        stortype: u16,
    },
    /// 8: set node data.
    NodeDataSet {
        name: String,
        valu: Value,
        oldv: Value,
    },
    /// 9: delete node data.
    NodeDataDel { name: String, oldv: Value },
    /// 10: add a light edge to the node `n2`.
    EdgeAdd { verb: String, n2: Buid },
    /// 11: delete a light edge.
    EdgeDel { verb: String, n2: Buid },
}

/// All edits of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeEdit {
    /// The node.
    pub buid: Buid,
    /// Its form.
    pub form: String,
    /// The edits, in order.
    pub edits: Vec<Edit>,
}

/// How an encoded nodeedit holds its buid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuidForm {
    /// As 32 bytes (the edit log, `storNodeEdits`).
    Bytes,
    /// As a 64-digit hex iden (storm's `node:edits` messages).
    Iden,
}

fn sv(s: &str) -> Value {
    Value::from(s)
}

fn st(t: u16) -> Value {
    Value::from(t as i64)
}

impl Edit {
    /// The edit type number.
    pub fn kind(&self) -> i64 {
        match self {
            Edit::NodeAdd { .. } => 0,
            Edit::NodeDel { .. } => 1,
            Edit::PropSet { .. } => 2,
            Edit::PropDel { .. } => 3,
            Edit::TagSet { .. } => 4,
            Edit::TagDel { .. } => 5,
            Edit::TagPropSet { .. } => 6,
            Edit::TagPropDel { .. } => 7,
            Edit::NodeDataSet { .. } => 8,
            Edit::NodeDataDel { .. } => 9,
            Edit::EdgeAdd { .. } => 10,
            Edit::EdgeDel { .. } => 11,
        }
    }

    /// The wire form `(type, info, ())`.
    pub fn to_value(&self) -> Value {
        let info = match self {
            Edit::NodeAdd { valu, stortype } | Edit::NodeDel { valu, stortype } => {
                vec![valu.clone(), st(*stortype)]
            }
            Edit::PropSet {
                prop,
                valu,
                oldv,
                stortype,
            } => {
                vec![sv(prop), valu.clone(), oldv.clone(), st(*stortype)]
            }
            Edit::PropDel {
                prop,
                oldv,
                stortype,
            } => vec![sv(prop), oldv.clone(), st(*stortype)],
            Edit::TagSet { tag, valu, oldv } => vec![
                sv(tag),
                ival_to_value(valu),
                oldv.as_ref().map_or(Value::Nil, ival_to_value),
            ],
            Edit::TagDel { tag, oldv } => vec![sv(tag), ival_to_value(oldv)],
            Edit::TagPropSet {
                tag,
                prop,
                valu,
                oldv,
                stortype,
            } => {
                vec![sv(tag), sv(prop), valu.clone(), oldv.clone(), st(*stortype)]
            }
            Edit::TagPropDel {
                tag,
                prop,
                oldv,
                stortype,
            } => {
                vec![sv(tag), sv(prop), oldv.clone(), st(*stortype)]
            }
            Edit::NodeDataSet { name, valu, oldv } => vec![sv(name), valu.clone(), oldv.clone()],
            Edit::NodeDataDel { name, oldv } => vec![sv(name), oldv.clone()],
            Edit::EdgeAdd { verb, n2 } | Edit::EdgeDel { verb, n2 } => {
                vec![sv(verb), Value::from(iden(n2))]
            }
        };
        Value::Array(vec![
            Value::from(self.kind()),
            Value::Array(info),
            Value::Array(vec![]),
        ])
    }

    /// Read `(type, info, subedits)`; subedits are not used by Synapse 2.x and are ignored.
    pub fn from_value(v: &Value) -> SynResult<Edit> {
        let bad = || SynErr::bad_arg(format!("malformed edit: {v}"));
        let parts = v.as_array().ok_or_else(bad)?;
        let (kind, info) = match parts {
            [k, Value::Array(info), ..] => (k.as_i64().ok_or_else(bad)?, info.as_slice()),
            _ => return Err(bad()),
        };
        let s = |x: &Value| x.as_str().map(str::to_owned).ok_or_else(bad);
        let t = |x: &Value| {
            x.as_i64()
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(bad)
        };
        let n2 = |x: &Value| -> SynResult<Buid> {
            let bytes = x
                .as_str()
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(bad)?;
            bytes.try_into().map_err(|_| bad())
        };
        Ok(match (kind, info) {
            (0, [valu, stor]) => Edit::NodeAdd {
                valu: valu.clone(),
                stortype: t(stor)?,
            },
            (1, [valu, stor]) => Edit::NodeDel {
                valu: valu.clone(),
                stortype: t(stor)?,
            },
            (2, [prop, valu, oldv, stor]) => Edit::PropSet {
                prop: s(prop)?,
                valu: valu.clone(),
                oldv: oldv.clone(),
                stortype: t(stor)?,
            },
            (3, [prop, oldv, stor]) => Edit::PropDel {
                prop: s(prop)?,
                oldv: oldv.clone(),
                stortype: t(stor)?,
            },
            (4, [tag, valu, oldv]) => Edit::TagSet {
                tag: s(tag)?,
                valu: ival_from_value(valu)?,
                oldv: if oldv.is_nil() {
                    None
                } else {
                    Some(ival_from_value(oldv)?)
                },
            },
            (5, [tag, oldv]) => Edit::TagDel {
                tag: s(tag)?,
                oldv: ival_from_value(oldv)?,
            },
            (6, [tag, prop, valu, oldv, stor]) => Edit::TagPropSet {
                tag: s(tag)?,
                prop: s(prop)?,
                valu: valu.clone(),
                oldv: oldv.clone(),
                stortype: t(stor)?,
            },
            (7, [tag, prop, oldv, stor]) => Edit::TagPropDel {
                tag: s(tag)?,
                prop: s(prop)?,
                oldv: oldv.clone(),
                stortype: t(stor)?,
            },
            (8, [name, valu, oldv]) => Edit::NodeDataSet {
                name: s(name)?,
                valu: valu.clone(),
                oldv: oldv.clone(),
            },
            (9, [name, oldv]) => Edit::NodeDataDel {
                name: s(name)?,
                oldv: oldv.clone(),
            },
            (10, [verb, n]) => Edit::EdgeAdd {
                verb: s(verb)?,
                n2: n2(n)?,
            },
            (11, [verb, n]) => Edit::EdgeDel {
                verb: s(verb)?,
                n2: n2(n)?,
            },
            _ => return Err(bad()),
        })
    }
}

impl NodeEdit {
    /// The wire form `(buid, form, edits)` with the buid as bytes (the layer and log form).
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Bin(self.buid.to_vec()),
            Value::from(self.form.as_str()),
            Value::Array(self.edits.iter().map(Edit::to_value).collect()),
        ])
    }

    /// Write the bytes of [`NodeEdit::to_value`] (buid as bytes) or [`NodeEdit::to_value_hex`]
    /// (buid as an iden) without building the value: the log's and the storm stream's hot
    /// path.
    pub fn encode(&self, buid: BuidForm, out: &mut Vec<u8>) {
        use msgpack::{encode, write_array_len as array, write_int as int, write_str as text};
        let ival = |ival: &Ival, out: &mut Vec<u8>| {
            array(2, out);
            for bound in [ival.0, ival.1] {
                encode(&Value::from(bound), out);
            }
        };
        array(3, out);
        match buid {
            BuidForm::Bytes => msgpack::write_bin(&self.buid, out),
            BuidForm::Iden => text(&iden(&self.buid), out),
        }
        text(&self.form, out);
        array(self.edits.len(), out);
        for edit in &self.edits {
            array(3, out);
            int(edit.kind().into(), out);
            match edit {
                Edit::NodeAdd { valu, stortype } | Edit::NodeDel { valu, stortype } => {
                    array(2, out);
                    encode(valu, out);
                    int((*stortype).into(), out);
                }
                Edit::PropSet {
                    prop,
                    valu,
                    oldv,
                    stortype,
                } => {
                    array(4, out);
                    text(prop, out);
                    encode(valu, out);
                    encode(oldv, out);
                    int((*stortype).into(), out);
                }
                Edit::PropDel {
                    prop,
                    oldv,
                    stortype,
                } => {
                    array(3, out);
                    text(prop, out);
                    encode(oldv, out);
                    int((*stortype).into(), out);
                }
                Edit::TagSet { tag, valu, oldv } => {
                    array(3, out);
                    text(tag, out);
                    ival(valu, out);
                    match oldv {
                        Some(old) => ival(old, out),
                        None => encode(&Value::Nil, out),
                    }
                }
                Edit::TagDel { tag, oldv } => {
                    array(2, out);
                    text(tag, out);
                    ival(oldv, out);
                }
                Edit::TagPropSet {
                    tag,
                    prop,
                    valu,
                    oldv,
                    stortype,
                } => {
                    array(5, out);
                    text(tag, out);
                    text(prop, out);
                    encode(valu, out);
                    encode(oldv, out);
                    int((*stortype).into(), out);
                }
                Edit::TagPropDel {
                    tag,
                    prop,
                    oldv,
                    stortype,
                } => {
                    array(4, out);
                    text(tag, out);
                    text(prop, out);
                    encode(oldv, out);
                    int((*stortype).into(), out);
                }
                Edit::NodeDataSet { name, valu, oldv } => {
                    array(3, out);
                    text(name, out);
                    encode(valu, out);
                    encode(oldv, out);
                }
                Edit::NodeDataDel { name, oldv } => {
                    array(2, out);
                    text(name, out);
                    encode(oldv, out);
                }
                Edit::EdgeAdd { verb, n2 } | Edit::EdgeDel { verb, n2 } => {
                    array(2, out);
                    text(verb, out);
                    text(&iden(n2), out);
                }
            }
            array(0, out);
        }
    }

    /// The form storm's `node:edits` messages use: the buid as a hex iden.
    pub fn to_value_hex(&self) -> Value {
        Value::Array(vec![
            Value::from(iden(&self.buid)),
            Value::from(self.form.as_str()),
            Value::Array(self.edits.iter().map(Edit::to_value).collect()),
        ])
    }

    /// Read a nodeedit whose buid is bytes or a hex iden.
    pub fn from_value(v: &Value) -> SynResult<NodeEdit> {
        let bad = || SynErr::bad_arg(format!("malformed nodeedit: {v}"));
        let parts = v.as_array().ok_or_else(bad)?;
        let [buid, form, edits] = parts else {
            return Err(bad());
        };
        let buid: Buid = match buid {
            Value::Bin(b) => b.as_slice().try_into().map_err(|_| bad())?,
            Value::Str(h) => hex::decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        Ok(NodeEdit {
            buid,
            form: form.as_str().ok_or_else(bad)?.to_owned(),
            edits: edits
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(Edit::from_value)
                .collect::<SynResult<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iden_is_the_buids_lowercase_hex() {
        let buid: Buid = std::array::from_fn(|i| (i * 37 + 5) as u8);
        assert_eq!(iden(&buid), hex::encode(buid));
        assert_eq!(iden(&[0xab; 32]), "ab".repeat(32));
    }

    #[test]
    fn every_edit_round_trips() {
        let n2 = [7u8; 32];
        let edits = vec![
            Edit::NodeAdd {
                valu: Value::Int(0x01020304),
                stortype: stortype::U32,
            },
            Edit::PropSet {
                prop: ".created".into(),
                valu: Value::Int(1),
                oldv: Value::Nil,
                stortype: stortype::MINTIME,
            },
            Edit::PropDel {
                prop: "asn".into(),
                oldv: Value::Int(5),
                stortype: stortype::U32,
            },
            Edit::TagSet {
                tag: "foo".into(),
                valu: (None, None),
                oldv: None,
            },
            Edit::TagSet {
                tag: "foo.bar".into(),
                valu: (Some(1), Some(2)),
                oldv: Some((None, None)),
            },
            Edit::TagDel {
                tag: "foo".into(),
                oldv: (None, None),
            },
            Edit::TagPropSet {
                tag: "foo".into(),
                prop: "score".into(),
                valu: Value::Int(5),
                oldv: Value::Nil,
                stortype: stortype::I64,
            },
            Edit::TagPropDel {
                tag: "foo".into(),
                prop: "score".into(),
                oldv: Value::Int(5),
                stortype: stortype::I64,
            },
            Edit::NodeDataSet {
                name: "x".into(),
                valu: Value::from("y"),
                oldv: Value::Nil,
            },
            Edit::NodeDataDel {
                name: "x".into(),
                oldv: Value::from("y"),
            },
            Edit::EdgeAdd {
                verb: "refs".into(),
                n2,
            },
            Edit::EdgeDel {
                verb: "refs".into(),
                n2,
            },
            Edit::NodeDel {
                valu: Value::Int(0x01020304),
                stortype: stortype::U32,
            },
        ];
        let ne = NodeEdit {
            buid: [1u8; 32],
            form: "inet:ipv4".into(),
            edits,
        };
        assert_eq!(NodeEdit::from_value(&ne.to_value()).unwrap(), ne);
        assert_eq!(NodeEdit::from_value(&ne.to_value_hex()).unwrap(), ne);
        // The NODE_ADD edit as Synapse writes it: (0, (16909060, 4), ()).
        assert_eq!(
            ne.edits[0].to_value(),
            Value::Array(vec![
                Value::Int(0),
                Value::Array(vec![Value::Int(16909060), Value::Int(4)]),
                Value::Array(vec![])
            ])
        );
        assert!(Edit::from_value(&Value::from("x")).is_err());
        assert!(
            Edit::from_value(&Value::Array(vec![Value::Int(99), Value::Array(vec![])])).is_err()
        );
    }
}
