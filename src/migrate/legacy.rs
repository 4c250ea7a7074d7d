//! Layers without a `layer:model:version` key, and small formatting helpers for the
//! migration's records.
//!
//! Synapse 0.1.58 stamps a layer with its model version when it opens the layer at start-up
//! (`ModelRev.revCoreLayers`); a layer made at run time (`View.fork()`) has no stamp until
//! the next start, and 0.1.58 would then run every model migration on it, since a missing key
//! reads as (-1, -1, -1). Those migrations (0.1.58's `synapse/lib/modelrev.py`) are:
//! * 0.0.0: nothing;
//! * 0.1.0: form renames (`seen` → `meta:seen`, `source` → `meta:source`, `has` → `edge:has`,
//!   `refs` → `edge:refs`, `wentto` → `edge:wentto`, `event` → `graph:event`, `cluster` →
//!   `graph:cluster`, `graph:link` → `graph:edge`, `graph:timelink` → `graph:timeedge`);
//! * 0.1.1: re-normalize `ps:contact:address`;
//! * 0.1.2: nothing (a barrier);
//! * 0.1.3: rename the prop `ou:org:disolved` to `ou:org:dissolved`.
//!
//! [`Fixups::scan`] reads the layer once and finds which of these would change something;
//! [`Fixups::apply`] does those changes to each node as it is migrated, so the layer is
//! migrated as 0.1.58 would have left it at (0, 1, 3).

use super::source::{SrcLayer, SrcNode};
use crate::cortex::model::Model;
use crate::error::SynResult;
use crate::msgpack::Value;

/// The 0.1.0 form renames.
pub const FORM_RENAMES: &[(&str, &str)] = &[
    ("seen", "meta:seen"),
    ("source", "meta:source"),
    ("has", "edge:has"),
    ("refs", "edge:refs"),
    ("wentto", "edge:wentto"),
    ("event", "graph:event"),
    ("cluster", "graph:cluster"),
    ("graph:link", "graph:edge"),
    ("graph:timelink", "graph:timeedge"),
];

/// What 0.1.58's model migrations would change in one unstamped layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fixups {
    /// Nodes scanned.
    pub nodes: u64,
    /// Nodes of a form renamed in 0.1.0.
    pub renamed_forms: u64,
    /// `ps:contact` nodes with an `address` whose normal form differs (0.1.1).
    pub contact_addresses: u64,
    /// `ou:org` nodes with a `disolved` prop (0.1.3).
    pub disolved: u64,
}

fn renamed(form: &str) -> Option<&'static str> {
    FORM_RENAMES
        .iter()
        .find(|(old, _)| *old == form)
        .map(|(_, new)| *new)
}

fn contact_address_norm(model: &Model, valu: &Value) -> Option<Value> {
    let prop = model.prop("ps:contact:address")?;
    let norm = prop.norm(model, valu).ok()?;
    (norm.valu != *valu).then_some(norm.valu)
}

impl Fixups {
    /// Read every node of `layer` and count what each migration would change.
    pub fn scan(layer: &SrcLayer, model: &Model) -> SynResult<Fixups> {
        let mut found = Fixups::default();
        layer.scan(None, |node| {
            found.nodes += 1;
            let form = node.ndef.as_ref().map(|(f, _)| f.as_str());
            if form.and_then(renamed).is_some() {
                found.renamed_forms += 1;
            }
            for (prop, valu) in &node.props {
                if prop == "disolved" && form.is_none_or(|f| f == "ou:org") {
                    found.disolved += 1;
                }
                if prop == "address"
                    && form == Some("ps:contact")
                    && contact_address_norm(model, valu).is_some()
                {
                    found.contact_addresses += 1;
                }
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// Whether any migration changes something.
    pub fn needed(&self) -> bool {
        self.renamed_forms + self.contact_addresses + self.disolved > 0
    }

    /// One line for the log: what was found and what is done about it.
    pub fn describe(&self, layer: &str) -> String {
        let head = format!(
            "layer {layer} has no layer:model:version (0.1.58 stamps a layer it made at run time \
             only when it next starts, then runs its model migrations 0.1.0 form renames, 0.1.1 \
             ps:contact:address, 0.1.3 ou:org:disolved on it); read its {} nodes:",
            self.nodes
        );
        if !self.needed() {
            return format!(
                "{head} none of those migrations changes anything, migrating it as (0, 1, 3)"
            );
        }
        format!(
            "{head} {} nodes of renamed forms, {} ps:contact addresses to re-normalize, {} \
             ou:org:disolved props; applying those changes as 0.1.58 would and migrating it as (0, 1, 3)",
            self.renamed_forms, self.contact_addresses, self.disolved
        )
    }

    /// Change `node` as 0.1.58's migrations would have.
    pub fn apply(&self, node: &mut SrcNode, model: &Model) {
        if !self.needed() {
            return;
        }
        if let Some((form, valu)) = &mut node.ndef
            && let Some(new) = renamed(form)
        {
            *form = new.to_owned();
            node.buid = crate::cortex::model::buid(form, valu);
        }
        let form = node.ndef.as_ref().map(|(f, _)| f.clone());
        for (prop, valu) in &mut node.props {
            if prop == "disolved" && form.as_deref().is_none_or(|f| f == "ou:org") {
                *prop = "dissolved".into();
            }
            if prop == "address"
                && form.as_deref() == Some("ps:contact")
                && let Some(norm) = contact_address_norm(model, valu)
            {
                *valu = norm;
            }
        }
    }
}

/// A msgpack value as Python prints a tuple: `(0, 1, 3)`.
pub fn py_tuple(v: &Value) -> String {
    match v.as_array() {
        Some(items) => {
            let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            if parts.len() == 1 {
                format!("({},)", parts[0])
            } else {
                format!("({})", parts.join(", "))
            }
        }
        None => v.to_string(),
    }
}

/// A version as a YAML flow list: `[0, 1, 58]`.
pub fn yaml_list(v: &Value) -> String {
    match v.as_array() {
        Some(items) => {
            let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            format!("[{}]", parts.join(", "))
        }
        None => "null".into(),
    }
}
