//! One 0.1.x node into one 2.x nodeedit, with the checks and error messages of Synapse's
//! `migrate_200` (`_trnNodeToNodeedit`, spec §7.4).

use std::collections::HashMap;
use std::sync::Arc;

use super::source::SrcNode;
use crate::cortex::edits::{Edit, NodeEdit, ival_from_value};
use crate::cortex::model::Model;
use crate::msgpack::Value;

/// Why a node was skipped: a short reason for the summary, and Synapse's message.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeError {
    /// The reason, one of the `REASON_*` names, for counting.
    pub reason: &'static str,
    /// The message, worded as Synapse's tool words it.
    pub mesg: String,
}

/// The form or a prop has no stortype in syn's model.
pub const REASON_STORTYPE: &str = "Unable to determine stortype";
/// Normalizing the primary value raised (for example NoSuchForm or BadTypeValu).
pub const REASON_NORM_EXC: &str = "Buid/norming exception";
/// The stored primary value is not what the model normalizes it to.
pub const REASON_NORM_MISMATCH: &str = "Normed form val does not match inbound";
/// The buid is not `sha256(msgpack((form, valu)))`.
pub const REASON_BUID_MISMATCH: &str = "Calculated buid does not match inbound";
/// A partial node whose form row is in no layer.
pub const REASON_NO_FORM: &str = "No form name available";
/// A row the layer refused (bad value for its stortype).
pub const REASON_STORE: &str = "Unable to store nodeedits";
/// A tag interval that is not `(min, max)`.
pub const REASON_BAD_TAG: &str = "Unable to read tag interval";

/// A value as Python's f-strings print it: strings bare, everything else as its repr.
fn py_str(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_owned(),
        None => v.to_string(),
    }
}

fn err(reason: &'static str, mesg: String) -> NodeError {
    NodeError { reason, mesg }
}

/// Turns source nodes into nodeedits against one model.
pub struct Translator {
    model: Arc<Model>,
    safety: bool,
    /// `--safety-off`: form stortypes looked up once per form name.
    form_stortypes: HashMap<String, Option<u16>>,
}

impl Translator {
    /// A translator; `safety` normalizes each primary value and checks its buid.
    pub fn new(model: Arc<Model>, safety: bool) -> Translator {
        Translator {
            model,
            safety,
            form_stortypes: HashMap::new(),
        }
    }

    /// The model nodes are checked against.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Translate `node`; `form` names the form of a partial node (no `*form` row here).
    pub fn node(&mut self, node: SrcNode, form: Option<&str>) -> Result<NodeEdit, NodeError> {
        let mut edits = Vec::with_capacity(
            1 + node.props.len() + node.tags.len() + node.tagprops.len() + node.data.len(),
        );
        let fname = match node.ndef {
            Some((fname, fval)) => {
                let stortype = self.form_stortype(&fname, &fval, &node.buid)?;
                edits.push(Edit::NodeAdd {
                    valu: fval,
                    stortype,
                });
                fname
            }
            None => match form {
                Some(f) => f.to_owned(),
                None => {
                    return Err(err(
                        REASON_NO_FORM,
                        format!("No form name available for {}", hex::encode(node.buid)),
                    ));
                }
            },
        };
        let mform = self.model.form(&fname);
        for (prop, valu) in node.props {
            let stortype = if prop.starts_with('.') {
                self.model.univ(&prop).map(|p| p.stortype)
            } else {
                mform.and_then(|f| f.prop(&prop)).map(|p| p.stortype)
            };
            let Some(stortype) = stortype else {
                return Err(err(
                    REASON_STORTYPE,
                    format!("Unable to determine stortype for sprop {prop}, form {fname}"),
                ));
            };
            edits.push(Edit::PropSet {
                prop,
                valu,
                oldv: Value::Nil,
                stortype,
            });
        }
        for (tag, valu) in node.tags {
            let ival = ival_from_value(&valu).map_err(|e| {
                err(
                    REASON_BAD_TAG,
                    format!(
                        "Unable to read tag interval #{tag} of {}: {}",
                        hex::encode(node.buid),
                        e.mesg()
                    ),
                )
            })?;
            edits.push(Edit::TagSet {
                tag,
                valu: ival,
                oldv: None,
            });
        }
        for (tag, prop, valu) in node.tagprops {
            let Some(tp) = self.model.tagprop(&prop) else {
                return Err(err(
                    REASON_STORTYPE,
                    format!("Unable to determine stortype for tagprop {prop}: NoSuchTagProp"),
                ));
            };
            edits.push(Edit::TagPropSet {
                tag,
                prop,
                valu,
                oldv: Value::Nil,
                stortype: tp.stortype,
            });
        }
        for (name, item) in node.data {
            edits.push(Edit::NodeDataSet {
                name,
                valu: item,
                oldv: Value::Nil,
            });
        }
        Ok(NodeEdit {
            buid: node.buid,
            form: fname,
            edits,
        })
    }

    /// The form's stortype, after (with safety on) checking the value is normalized and the
    /// buid is its own.
    fn form_stortype(
        &mut self,
        fname: &str,
        fval: &Value,
        buid: &[u8; 32],
    ) -> Result<u16, NodeError> {
        if !self.safety {
            let stortype = *self
                .form_stortypes
                .entry(fname.to_owned())
                .or_insert_with(|| self.model.form(fname).map(|f| f.stortype()));
            return stortype.ok_or_else(|| {
                err(
                    REASON_STORTYPE,
                    format!("Unable to determine stortype for {fname}"),
                )
            });
        }
        let Some(mform) = self.model.form(fname) else {
            return Err(err(
                REASON_STORTYPE,
                format!(
                    "Unable to determine stortype for {fname}: NoSuchForm: No form named {fname}."
                ),
            ));
        };
        let norm = mform.norm(&self.model, fval).map_err(|e| {
            err(
                REASON_NORM_EXC,
                format!(
                    "Buid/norming exception {}: {}: {}, {fname}, {}",
                    e.name,
                    e.mesg(),
                    hex::encode(buid),
                    py_str(fval)
                ),
            )
        })?;
        let host_addr = mform.typ.base_name() == "inet:addr"
            && fval.as_str().is_some_and(|s| s.starts_with("host://"));
        if norm.valu != *fval && !host_addr {
            return Err(err(
                REASON_NORM_MISMATCH,
                format!(
                    "Normed form val does not match inbound {fname}, {}, {}",
                    py_str(fval),
                    py_str(&norm.valu)
                ),
            ));
        }
        if crate::cortex::model::buid(fname, fval) != *buid {
            return Err(err(
                REASON_BUID_MISMATCH,
                format!(
                    "Calculated buid does not match inbound {}, {fname}, {}",
                    hex::encode(buid),
                    py_str(fval)
                ),
            ));
        }
        Ok(mform.stortype())
    }
}
