//! The cell-level parts of a migration: users, roles and rules (spec §7.3 step 9), views and
//! layers (the topology record), the extended model, and the automation definitions
//! (triggers, cron jobs, queues, storm commands and variables) that syn stores but does not
//! run yet.

use std::collections::BTreeMap;

use super::source::{Hive, SrcCortex};
use crate::cell::auth::{ALL_ROLE, Auth, GateEntry, ROOT_USER, Role, Rule, Shadow, User};
use crate::cortex::model::Model;
use crate::cortex::model::ext::{ExtFormProp, ExtModel, ExtPropDef};
use crate::cortex::topology::{LayerDef, Topology, ViewDef};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::Slab;

/// The cell slab database that holds the migrated automation definitions.
pub const AUTOMATION_DB: &str = "cortex:automation";

/// Translate a 0.1.x rule path to 2.x (spec §7.3 step 9): `('storm', x, ...)` loses `storm`;
/// `prop:set` and `tag:add` become `('node', 'prop', 'set')`, `('node', 'tag', 'add')`;
/// `node:add` and `layer:lift` are split at the colon.
pub fn translate_rule_path(path: &[String]) -> Vec<String> {
    let Some(first) = path.first() else {
        return Vec::new();
    };
    let rest = path[1..].iter().cloned();
    if first == "storm" {
        return rest.collect();
    }
    if first.starts_with("prop:") || first.starts_with("tag:") {
        let mut out = vec!["node".to_owned()];
        out.extend(first.split(':').map(str::to_owned));
        out.extend(rest);
        return out;
    }
    if first.starts_with("node:") || first.starts_with("layer:") {
        let mut out: Vec<String> = first.split(':').map(str::to_owned).collect();
        out.extend(rest);
        return out;
    }
    path.to_vec()
}

fn read_rules(v: Option<&Value>) -> Vec<Rule> {
    v.and_then(Value::as_array)
        .unwrap_or(&[])
        .iter()
        .filter_map(|r| Rule::from_value(r).ok())
        .map(|r| Rule {
            allow: r.allow,
            path: translate_rule_path(&r.path),
        })
        .collect()
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .unwrap_or(&[])
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn flag(hive: &Hive, path: &[&str]) -> bool {
    hive.get(path).and_then(Value::as_bool).unwrap_or(false)
}

/// The gate entries of every auth gate for `kind` (`users` or `roles`) and `iden`.
fn gates_of(hive: &Hive, kind: &str, iden: &str) -> BTreeMap<String, GateEntry> {
    let mut gates = BTreeMap::new();
    for gate in hive.children(&["auth", "authgates"]) {
        let base = ["auth", "authgates", gate.as_str(), kind, iden];
        if hive.get(&base).is_none() && hive.children(&base).is_empty() {
            continue;
        }
        let mut rules_path = base.to_vec();
        rules_path.push("rules");
        let mut admin_path = base.to_vec();
        admin_path.push("admin");
        gates.insert(
            gate.clone(),
            GateEntry {
                admin: flag(hive, &admin_path),
                rules: read_rules(hive.get(&rules_path)),
            },
        );
    }
    gates
}

/// The users and roles of the 0.1.x hive in syn's shape, with translated rules and the
/// password shadows unchanged (0.1.x and 2.0 hash passwords the same way).
pub fn read_auth(hive: &Hive) -> (Vec<User>, Vec<Role>) {
    let roles = hive
        .children(&["auth", "roles"])
        .into_iter()
        .filter_map(|iden| {
            let name = hive.get(&["auth", "roles", &iden])?.as_str()?.to_owned();
            Some(Role {
                rules: read_rules(hive.get(&["auth", "roles", &iden, "rules"])),
                gates: gates_of(hive, "roles", &iden),
                iden,
                name,
            })
        })
        .collect();
    let users = hive
        .children(&["auth", "users"])
        .into_iter()
        .filter_map(|iden| {
            let name = hive.get(&["auth", "users", &iden])?.as_str()?.to_owned();
            let at = |key: &'static str| ["auth", "users", iden.as_str(), key];
            Some(User {
                admin: flag(hive, &at("admin")) || name == ROOT_USER,
                locked: flag(hive, &at("locked")) && name != ROOT_USER,
                archived: flag(hive, &at("archived")) && name != ROOT_USER,
                email: hive
                    .get(&at("email"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                roles: strs(hive.get(&at("roles"))),
                rules: read_rules(hive.get(&at("rules"))),
                gates: gates_of(hive, "users", &iden),
                shadow: hive.get(&at("passwd")).and_then(Shadow::from_synapse),
                iden,
                name,
            })
        })
        .collect();
    (users, roles)
}

/// Who made something in 0.1.x (a user *name* for views and layers): that user's iden, or
/// root's.
fn creator(auth: &Auth, owner: Option<&Value>, root: &str) -> String {
    owner
        .and_then(Value::as_str)
        .and_then(|name| auth.user_by_name(name))
        .map_or_else(|| root.to_owned(), |u| u.iden)
}

/// The views and layers of the 0.1.x hive as syn's topology (every layer, every view with
/// its layer stack; a view whose first layer is another view's lower layer is that view's
/// fork). 0.1.x kept no creation times: each view and layer is stamped with the moment of
/// the migration.
pub fn topology(src: &SrcCortex, auth: &Auth, root: &str) -> SynResult<Topology> {
    let hive = &src.hive;
    let created = crate::clock::now_ms();
    let layers = src
        .layers
        .iter()
        .map(|l| LayerDef {
            iden: l.iden.clone(),
            name: hive
                .get(&["cortex", "layers", &l.iden, "name"])
                .and_then(Value::as_str)
                .map(str::to_owned),
            creator: creator(
                auth,
                hive.get(&["cortex", "layers", &l.iden, "owner"]),
                root,
            ),
            created,
        })
        .collect::<Vec<_>>();
    let mut views: Vec<ViewDef> = hive
        .children(&["cortex", "views"])
        .into_iter()
        .map(|iden| ViewDef {
            name: hive
                .get(&["cortex", "views", &iden, "name"])
                .and_then(Value::as_str)
                .map(str::to_owned),
            creator: creator(auth, hive.get(&["cortex", "views", &iden, "owner"]), root),
            layers: strs(hive.get(&["cortex", "views", &iden, "layers"])),
            parent: None,
            created,
            iden,
        })
        .collect();
    // A fork reads its own layer over its parent's whole stack.
    let stacks: Vec<(String, Vec<String>)> = views
        .iter()
        .map(|v| (v.iden.clone(), v.layers.clone()))
        .collect();
    for view in &mut views {
        view.parent = stacks
            .iter()
            .find(|(iden, stack)| {
                *iden != view.iden
                    && view.layers.len() == stack.len() + 1
                    && view.layers[1..] == stack[..]
            })
            .map(|(iden, _)| iden.clone());
    }
    let default_view = hive
        .get(&["cellinfo", "defaultview"])
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| views.first().map(|v| v.iden.clone()))
        .ok_or_else(|| SynErr::new("BadSource", "the 0.1.x hive names no views"))?;
    Ok(Topology {
        default_view,
        views,
        layers,
    })
}

/// Synapse's extended model in the 0.1.x hive (`cortex/model/props/*` as `(form, prop, tdef,
/// info)`, `univs/*` and `tagprops/*` as `(name, tdef, info)`) as syn's [`ExtModel`].
pub fn read_ext_model(hive: &Hive) -> ExtModel {
    let items = |kind: &str| -> Vec<Vec<Value>> {
        hive.children(&["cortex", "model", kind])
            .iter()
            .filter_map(|k| hive.get(&["cortex", "model", kind, k]))
            .filter_map(|v| v.as_array().map(<[Value]>::to_vec))
            .collect()
    };
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let propdef = |v: Vec<Value>| ExtPropDef {
        name: s(&v[0]),
        tdef: v[1].clone(),
        info: v[2].clone(),
    };
    ExtModel {
        forms: Vec::new(),
        formprops: items("props")
            .into_iter()
            .filter(|v| v.len() == 4)
            .map(|v| ExtFormProp {
                form: s(&v[0]),
                prop: s(&v[1]),
                tdef: v[2].clone(),
                info: v[3].clone(),
            })
            .collect(),
        univprops: items("univs")
            .into_iter()
            .filter(|v| v.len() == 3)
            .map(propdef)
            .collect(),
        tagprops: items("tagprops")
            .into_iter()
            .filter(|v| v.len() == 3)
            .map(propdef)
            .collect(),
    }
}

/// `base` extended with `ext`; a definition the model refuses is reported through `warn` and
/// left out (its rows then fail as props the model lacks).
pub fn extended_model(base: &Model, ext: &ExtModel, warn: &mut dyn FnMut(String)) -> Model {
    let mut model = base.clone();
    for (what, e) in ext.apply(&mut model) {
        warn(format!("extended model: {what} left out: {}", e.mesg()));
    }
    model
}

/// The 0.1.x automation in 2.x shape, as stored in [`AUTOMATION_DB`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Automation {
    /// `(view iden, trigger dict)` with Synapse 2.0's new idens (guid of the rule dict).
    pub triggers: Vec<(String, Value)>,
    /// Cron job dicts with `creator` for `useriden`.
    pub cron: Vec<Value>,
    /// Queues: `{name, user, offs, items}`.
    pub queues: Vec<Value>,
    /// Pure storm commands by name.
    pub stormcmds: Vec<Value>,
    /// Storm global variables `(name, value)`.
    pub stormvars: Vec<(String, Value)>,
}

fn map_without(v: &Value, drop: &[&str]) -> Vec<(Value, Value)> {
    v.as_map()
        .unwrap_or(&[])
        .iter()
        .filter(|(k, _)| !k.as_str().is_some_and(|k| drop.contains(&k)))
        .cloned()
        .collect()
}

impl Automation {
    /// Translate the source's triggers, cron jobs, queues and storm commands and variables;
    /// `warn` hears about anything carried over with a default (a queue without an owner).
    pub fn read(
        src: &SrcCortex,
        root: &str,
        warn: &mut dyn FnMut(String),
    ) -> SynResult<Automation> {
        let hive = &src.hive;
        let mut out = Automation::default();
        for (old, rule) in src.triggers()? {
            let view = rule
                .get("viewiden")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    hive.get(&["cellinfo", "defaultview"])
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let user = rule
                .get("useriden")
                .and_then(Value::as_str)
                .unwrap_or(root)
                .to_owned();
            let mut dict = map_without(&rule, &["viewiden", "useriden"]);
            dict.push(("user".into(), user.into()));
            let iden = crate::guid::guid_of(&Value::Map(dict.clone()));
            dict.retain(|(k, _)| k.as_str() != Some("iden"));
            dict.push(("iden".into(), iden.as_str().into()));
            dict.retain(|(k, v)| {
                !(matches!(k.as_str(), Some("form" | "prop" | "tag")) && v.is_nil())
            });
            dict.push(("migrated:from".into(), old.into()));
            out.triggers.push((view, Value::Map(dict)));
        }
        for iden in hive.children(&["agenda", "appts"]) {
            let Some(appt) = hive.get(&["agenda", "appts", &iden]) else {
                continue;
            };
            let mut dict = map_without(appt, &["useriden"]);
            let creator = appt.get("useriden").cloned().unwrap_or(Value::from(root));
            dict.push(("creator".into(), creator));
            out.cron.push(Value::Map(dict));
        }
        for (name, info, items) in src.queues()? {
            let user = match info.get("user").and_then(Value::as_str) {
                Some(u) => u.to_owned(),
                None => {
                    warn(format!(
                        "queue {name} has no owner in its metadata: root owns it now"
                    ));
                    root.to_owned()
                }
            };
            out.queues.push(Value::map([
                ("name", Value::from(name.as_str())),
                ("user", Value::from(user.as_str())),
                ("meta", info.clone()),
                ("size", Value::from(items.len() as i64)),
                ("items", Value::Array(items)),
            ]));
        }
        for name in hive.children(&["cortex", "storm", "cmds"]) {
            if let Some(cmd) = hive.get(&["cortex", "storm", "cmds", &name]) {
                out.stormcmds.push(cmd.clone());
            }
        }
        for name in hive.children(&["cortex", "storm", "vars"]) {
            if let Some(v) = hive.get(&["cortex", "storm", "vars", &name]) {
                out.stormvars.push((name, v.clone()));
            }
        }
        Ok(out)
    }

    /// Store the definitions in the cell slab's [`AUTOMATION_DB`] (keys `triggers`, `cron`,
    /// `queues`, `storm:cmds`, `storm:vars`, each a msgpack list).
    pub fn save(&self, slab: &Slab) -> SynResult<()> {
        let db = slab.db(AUTOMATION_DB, false)?;
        let triggers = Value::Array(
            self.triggers
                .iter()
                .map(|(view, t)| Value::Array(vec![view.as_str().into(), t.clone()]))
                .collect(),
        );
        let vars = Value::Array(
            self.stormvars
                .iter()
                .map(|(n, v)| Value::Array(vec![n.as_str().into(), v.clone()]))
                .collect(),
        );
        slab.write(|txn| {
            db.put_value(txn, b"triggers", &triggers)?;
            db.put_value(txn, b"cron", &Value::Array(self.cron.clone()))?;
            db.put_value(txn, b"queues", &Value::Array(self.queues.clone()))?;
            db.put_value(txn, b"storm:cmds", &Value::Array(self.stormcmds.clone()))?;
            db.put_value(txn, b"storm:vars", &vars)
        })?;
        Ok(())
    }

    /// The auth gates Synapse 2.0 adds for these objects: trigger owners, cron creators and
    /// queue owners are admins of their gate (`queue:<name>` for queues); root of every one.
    pub fn gates(&self, root: &str) -> Vec<(String, String)> {
        let mut gates = Vec::new();
        for (_, t) in &self.triggers {
            if let (Some(iden), Some(user)) = (
                t.get("iden").and_then(Value::as_str),
                t.get("user").and_then(Value::as_str),
            ) {
                gates.push((iden.to_owned(), user.to_owned()));
            }
        }
        for c in &self.cron {
            if let (Some(iden), Some(user)) = (
                c.get("iden").and_then(Value::as_str),
                c.get("creator").and_then(Value::as_str),
            ) {
                gates.push((iden.to_owned(), user.to_owned()));
            }
        }
        for q in &self.queues {
            if let (Some(name), Some(user)) = (
                q.get("name").and_then(Value::as_str),
                q.get("user").and_then(Value::as_str),
            ) {
                gates.push((format!("queue:{name}"), user.to_owned()));
            }
        }
        let objects: Vec<String> = gates.iter().map(|(g, _)| g.clone()).collect();
        gates.extend(objects.into_iter().map(|g| (g, root.to_owned())));
        gates
    }
}

/// Import users and roles into the destination's auth, add the gates Synapse 2.0 adds
/// (owners of triggers, cron jobs and queues; `view.read` for role `all` on the default view)
/// and return the auth model.
pub fn import_auth(
    slab: &Slab,
    hive: &Hive,
    automation: &Automation,
    default_view: Option<&str>,
) -> SynResult<std::sync::Arc<Auth>> {
    let (mut users, roles) = read_auth(hive);
    // Gate type `layr` is renamed `layer`; syn keys gates by object iden alone, so the
    // entries carry over as they are.
    let root_iden = users
        .iter()
        .find(|u| u.name == ROOT_USER)
        .map(|u| u.iden.clone());
    for (gate, owner) in automation.gates(root_iden.as_deref().unwrap_or_default()) {
        if let Some(u) = users.iter_mut().find(|u| u.iden == owner) {
            u.gates.entry(gate).or_default().admin = true;
        }
    }
    let auth = Auth::import(slab, &users, &roles)?;
    if let (Some(view), Some(all)) = (default_view, auth.role_by_name(ALL_ROLE)) {
        auth.update_role(&all.iden, |r| {
            let read = Rule {
                allow: true,
                path: vec!["view".into(), "read".into()],
            };
            let entry = r.gates.entry(view.to_owned()).or_default();
            if !entry.rules.contains(&read) {
                entry.rules.push(read);
            }
            Ok(())
        })?;
    }
    Ok(auth)
}

#[cfg(test)]
mod tests {
    use super::translate_rule_path;

    fn p(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules_translate_as_synapse_2_0_does() {
        assert_eq!(
            translate_rule_path(&p(&["storm", "node", "data", "get"])),
            p(&["node", "data", "get"])
        );
        assert_eq!(
            translate_rule_path(&p(&["tag:add", "rep"])),
            p(&["node", "tag", "add", "rep"])
        );
        assert_eq!(
            translate_rule_path(&p(&["prop:set"])),
            p(&["node", "prop", "set"])
        );
        assert_eq!(
            translate_rule_path(&p(&["node:add", "inet:ipv4"])),
            p(&["node", "add", "inet:ipv4"])
        );
        assert_eq!(
            translate_rule_path(&p(&["layer:lift", "abc"])),
            p(&["layer", "lift", "abc"])
        );
        assert_eq!(
            translate_rule_path(&p(&["cron", "add"])),
            p(&["cron", "add"])
        );
    }
}
