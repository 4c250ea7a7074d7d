//! The data model of Synapse 2.x: types with Synapse's normalization, forms, props, universal
//! props, tag props, interfaces and light-edge definitions.
//!
//! # Where the model comes from
//!
//! The model is data, in one place: `model.json` beside this file holds the
//! `getModelDefs()` of Python Synapse 2.256.0 (53 ctors, 645 types, 595 forms, 2 univs, 21
//! interfaces, 90 edges) without its `doc`/`ex` strings, one definition per line. It is
//! compiled in and read by [`Model::load`] (see [`Model::shared`] for the parsed-once copy).
//! To regenerate it (and `lookups.json`, the phone prefix and IANA port tables) from a newer
//! Synapse:
//!
//! ```text
//! target/peers/syn2/bin/python tests/py/dump_model.py --out model-X.json
//! target/peers/syn2/bin/python tests/py/make_model_data.py model-X.json src/cortex/model
//! ```
//!
//! # Normalization
//!
//! Normalizers are Rust code keyed by ctor (the Python class of a type, e.g.
//! `synapse.models.inet.IPv4`), configured by each type's options from the data; see
//! [`norm`]. [`Type::norm`] returns a [`Norm`]: the value plus the `subs` and `adds` that
//! Python's norm info carries, which the node-editing code uses to set secondary props and to
//! create the nodes that a value points to (`:asn=10` adds `inet:asn=10`; a tag adds its
//! `syn:tag` nodes). [`Model::tag_norms`] gives the syn:tag nodes of a tag.
//!
//! Ctors without a normalizer here still load, so [`Model::model_defs`] is complete; norming
//! one of their types is a `NoSuchImpl` error naming the ctor. They are:
//! `synapse.lib.types.HugeNum`, `synapse.models.dns.DnsName`, `synapse.models.syn.SynUser`,
//! `synapse.models.syn.SynRole`, `synapse.models.risk.CvssV2`, `synapse.models.risk.CvssV3`,
//! `synapse.models.infotech.Cpe23Str`, `synapse.models.infotech.Cpe22Str`,
//! `synapse.models.geospace.Dist`, `synapse.models.geospace.Area` and
//! `synapse.models.inet.Rfc2822Addr` (see [`types::implemented_ctors`]).
//!
//! # Identity
//!
//! A node's buid is `sha256(msgpack((form, norm)))`: [`buid`].

pub mod data;
pub mod ext;
pub mod norm;
pub mod py;
pub mod types;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::cortex::NameMap;
use crate::cortex::edits::Buid;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

pub use types::{Norm, StorCmpr, Type, TypeMap, TypeRef};

/// The model revision a layer reports as `model:version`: that of Synapse 2.256, whose model
/// this is (its fresh layers say `(0, 2, 37)`).
pub const MODEL_REVISION: [i64; 3] = [0, 2, 37];

/// The buid of the node `(form, norm)`: `sha256(msgpack((form, norm)))`.
pub fn buid(form: &str, norm: &Value) -> Buid {
    crate::guid::buid_of(&Value::Array(vec![Value::from(form), norm.clone()]))
}

/// A property: a form's secondary prop (`inet:ipv4:asn`), a form's copy of a universal prop
/// (`inet:ipv4.seen`), or a universal prop itself (`.seen`).
#[derive(Clone, Debug)]
pub struct Prop {
    /// The relative name: `asn`, `.seen`.
    pub name: String,
    /// The full name: `inet:ipv4:asn`, `inet:ipv4.seen`, `.seen`.
    pub full: String,
    /// The form it belongs to (None for a universal prop).
    pub form: Option<String>,
    /// The type as declared: `(name, opts)`.
    pub typedef: (String, Value),
    /// The type with the declared options applied.
    pub typ: Arc<Type>,
    /// Prop info without doc strings (`ro`, `deprecated`, `disp`, ...).
    pub info: Value,
    /// Read-only once set.
    pub ro: bool,
    /// The index layout of its values.
    pub stortype: u16,
}

impl Prop {
    fn new(
        types: &TypeMap,
        form: Option<&str>,
        name: &str,
        typedef: (String, Value),
        info: Value,
    ) -> SynResult<Prop> {
        let typ = resolve_type(types, &typedef.0, &typedef.1)?;
        let full = match form {
            Some(f) if name.starts_with('.') => format!("{f}{name}"),
            Some(f) => format!("{f}:{name}"),
            None => name.to_string(),
        };
        Ok(Prop {
            name: name.to_string(),
            full,
            form: form.map(str::to_string),
            ro: info.get("ro").and_then(Value::as_bool).unwrap_or(false),
            stortype: typ.stortype,
            typedef,
            typ,
            info,
        })
    }

    /// Normalize a value for this prop.
    pub fn norm(&self, model: &Model, valu: &Value) -> SynResult<Norm> {
        self.typ.norm(model, valu)
    }

    /// Whether this is a universal prop (its own, not a form's copy).
    pub fn is_univ(&self) -> bool {
        self.form.is_none()
    }

    /// `(name, (type, opts), info)`.
    pub fn propdef(&self) -> Value {
        Value::Array(vec![
            Value::Str(self.name.clone()),
            typedef_value(&self.typedef),
            self.info.clone(),
        ])
    }

    /// getModelDict's prop info: `{name, full, type, stortype, **info}`.
    pub fn pack(&self) -> Value {
        let base = Value::map([
            ("name", Value::Str(self.name.clone())),
            ("full", Value::Str(self.full.clone())),
            ("type", typedef_value(&self.typedef)),
            ("stortype", Value::from(self.stortype as i64)),
        ]);
        types::merge_opts(&base, &self.info)
    }
}

fn typedef_value(td: &(String, Value)) -> Value {
    Value::Array(vec![Value::Str(td.0.clone()), td.1.clone()])
}

/// A form: a type whose values are nodes, with its props.
#[derive(Clone, Debug)]
pub struct Form {
    /// The form name, also its type's name.
    pub name: String,
    /// The form's type.
    pub typ: Arc<Type>,
    /// Form info without doc strings.
    pub info: Value,
    /// A runtime-only form (`syn:prop`, `syn:type`, ...).
    pub runt: bool,
    /// Props in definition order: `.seen`, `.created`, then the secondary props.
    props: Vec<Arc<Prop>>,
    index: NameMap<usize>,
}

impl Form {
    /// The index layout of the primary value.
    pub fn stortype(&self) -> u16 {
        self.typ.stortype
    }

    /// A prop by relative name: `asn`, `.seen`.
    pub fn prop(&self, name: &str) -> Option<&Arc<Prop>> {
        self.index.get(name).map(|&i| &self.props[i])
    }

    /// The props in definition order.
    pub fn props(&self) -> &[Arc<Prop>] {
        &self.props
    }

    /// Normalize a primary value.
    pub fn norm(&self, model: &Model, valu: &Value) -> SynResult<Norm> {
        self.typ.norm(model, valu)
    }

    fn push_prop(&mut self, prop: Arc<Prop>) {
        match self.index.get(&prop.name) {
            Some(&i) => self.props[i] = prop,
            None => {
                self.index.insert(prop.name.clone(), self.props.len());
                self.props.push(prop);
            }
        }
    }

    fn remove_prop(&mut self, name: &str) -> Option<Arc<Prop>> {
        let i = self.index.remove(name)?;
        let prop = self.props.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(prop)
    }

    /// getModelDict's form info: `{name, props, stortype, **info}`.
    pub fn pack(&self) -> Value {
        let props = Value::Map(
            self.props
                .iter()
                .map(|p| (Value::Str(p.name.clone()), p.pack()))
                .collect(),
        );
        let base = Value::map([
            ("name", Value::Str(self.name.clone())),
            ("props", props),
            ("stortype", Value::from(self.stortype() as i64)),
        ]);
        types::merge_opts(&base, &self.info)
    }

    /// `(name, info, propdefs)` as getModelDefs lists forms.
    pub fn formdef(&self) -> Value {
        Value::Array(vec![
            Value::Str(self.name.clone()),
            self.info.clone(),
            Value::Array(self.props.iter().map(|p| p.propdef()).collect()),
        ])
    }
}

/// A tag property definition: `#tag:name` values of one type.
#[derive(Clone, Debug)]
pub struct TagProp {
    /// The tag prop name (`score`).
    pub name: String,
    /// The type as declared: `(name, opts)`.
    pub typedef: (String, Value),
    /// The type with its options.
    pub typ: Arc<Type>,
    /// Info without doc strings.
    pub info: Value,
    /// The index layout of its values.
    pub stortype: u16,
}

impl TagProp {
    /// getModelDict's tag prop info: `{name, info, type, stortype}`.
    pub fn pack(&self) -> Value {
        Value::map([
            ("name", Value::Str(self.name.clone())),
            ("info", self.info.clone()),
            ("type", typedef_value(&self.typedef)),
            ("stortype", Value::from(self.stortype as i64)),
        ])
    }

    /// `(name, (type, opts), info)`.
    pub fn tagpropdef(&self) -> Value {
        Value::Array(vec![
            Value::Str(self.name.clone()),
            typedef_value(&self.typedef),
            self.info.clone(),
        ])
    }
}

/// The data model: types, forms and props by name. Cheap to clone (its parts are shared), so
/// a cortex clones [`Model::shared`] and extends its copy with the extended model.
#[derive(Clone, Debug, Default)]
pub struct Model {
    version: String,
    types: TypeMap,
    /// Ctor definitions `(name, ctor, declared opts, info)` as the data gives them.
    ctordefs: Vec<Value>,
    /// Names of the non-ctor types in definition order.
    type_names: Vec<String>,
    forms: NameMap<Arc<Form>>,
    form_names: Vec<String>,
    props: NameMap<Arc<Prop>>,
    univs: Vec<Arc<Prop>>,
    tagprops: Vec<Arc<TagProp>>,
    interfaces: Vec<(String, Value)>,
    edges: Vec<Value>,
}

/// Look up `name` and apply `opts` (Python's `model.type(name).clone(opts)`).
fn resolve_type(types: &TypeMap, name: &str, opts: &Value) -> SynResult<Arc<Type>> {
    let base = types.get(name).ok_or_else(|| {
        SynErr::new("NoSuchType", format!("No type named {name}.")).with("name", name)
    })?;
    match opts {
        Value::Map(m) if !m.is_empty() => Ok(Arc::new(base.clone_with(opts, types)?)),
        Value::Map(_) | Value::Nil => Ok(base.clone()),
        Value::Array(a) if a.is_empty() => Ok(base.clone()),
        other => Err(SynErr::new(
            "BadTypeDef",
            format!("type options for {name} must be a dict, got {other}"),
        )),
    }
}

fn bad_data(what: &str, v: &Value) -> SynErr {
    SynErr::new("BadModelData", format!("bad {what} in the model data: {v}"))
}

/// Read `(type, opts)`.
fn read_typedef(v: &Value) -> Option<(String, Value)> {
    match v.as_array()? {
        [Value::Str(t), opts] => Some((t.clone(), opts.clone())),
        _ => None,
    }
}

fn without_key(v: &Value, key: &str) -> Value {
    match v {
        Value::Map(m) => Value::Map(
            m.iter()
                .filter(|(k, _)| k.as_str() != Some(key))
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

fn empty_map() -> Value {
    Value::Map(Vec::new())
}

impl Model {
    /// Read the compiled-in model of Synapse 2.256.
    pub fn load() -> SynResult<Model> {
        Model::from_defs(&data::parse_json(data::MODEL_JSON)?)
    }

    /// The compiled-in model, parsed once per process.
    pub fn shared() -> SynResult<Arc<Model>> {
        static CELL: OnceLock<SynResult<Arc<Model>>> = OnceLock::new();
        CELL.get_or_init(|| Model::load().map(Arc::new)).clone()
    }

    /// Build a model from a definition in `model.json`'s shape: `{synapse, ctors, types,
    /// forms, univs, tagprops, interfaces, edges}`.
    pub fn from_defs(defs: &Value) -> SynResult<Model> {
        let list = |key: &str| defs.get(key).and_then(Value::as_array).unwrap_or(&[]);
        let mut model = Model {
            version: defs
                .get("synapse")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            ..Model::default()
        };

        let mut ctor_classes: HashMap<String, String> = HashMap::new();
        for def in list("ctors") {
            let (name, ctor, opts, info) = match def.as_array() {
                Some([Value::Str(n), Value::Str(c), o, i]) => (n, c, o, i),
                _ => return Err(bad_data("ctor", def)),
            };
            let typ = Type::new(
                name,
                ctor,
                norm::ctor_opts(ctor, opts),
                info.clone(),
                &model.types,
            )?;
            ctor_classes.insert(name.clone(), ctor.clone());
            model.types.insert(name.clone(), Arc::new(typ));
            model.ctordefs.push(def.clone());
        }

        for def in list("types") {
            let (name, (_, opts), info) = match def.as_array() {
                Some([Value::Str(n), td, i]) => {
                    (n, read_typedef(td).ok_or_else(|| bad_data("type", def))?, i)
                }
                _ => return Err(bad_data("type", def)),
            };
            let ctor =
                types::ctor_of(info, &ctor_classes).ok_or_else(|| bad_data("type bases", def))?;
            let typ = Type::new(
                name,
                &ctor,
                opts,
                without_key(info, "stortype"),
                &model.types,
            )?;
            model.types.insert(name.clone(), Arc::new(typ));
            model.type_names.push(name.clone());
        }

        for def in list("univs") {
            let (name, td, info) = read_propdef(def)?;
            let prop = Prop::new(&model.types, None, &name, td, info)?;
            let prop = Arc::new(prop);
            model.props.insert(prop.full.clone(), prop.clone());
            model.univs.push(prop);
        }

        for def in list("forms") {
            let (name, info, propdefs) = match def.as_array() {
                Some([Value::Str(n), i, Value::Array(p)]) => (n, i, p),
                _ => return Err(bad_data("form", def)),
            };
            let mut form = model.new_form(name, info.clone())?;
            for pdef in propdefs {
                let (pname, td, pinfo) = read_propdef(pdef)?;
                let prop = Arc::new(Prop::new(&model.types, Some(name), &pname, td, pinfo)?);
                form.push_prop(prop);
            }
            model.insert_form(form);
        }

        for def in list("tagprops") {
            let (name, td, info) = read_propdef(def)?;
            let tp = model.new_tagprop(&name, td, info)?;
            model.tagprops.push(Arc::new(tp));
        }

        for def in list("interfaces") {
            match def.as_array() {
                Some([Value::Str(n), info]) => model.interfaces.push((n.clone(), info.clone())),
                _ => return Err(bad_data("interface", def)),
            }
        }
        model.edges = list("edges").to_vec();
        Ok(model)
    }

    fn new_form(&self, name: &str, info: Value) -> SynResult<Form> {
        let typ = self
            .types
            .get(name)
            .ok_or_else(|| {
                SynErr::new("NoSuchType", format!("No type named {name}.")).with("name", name)
            })?
            .clone();
        Ok(Form {
            name: name.to_string(),
            runt: info.get("runt").and_then(Value::as_bool).unwrap_or(false),
            typ,
            info,
            props: Vec::new(),
            index: NameMap::default(),
        })
    }

    fn insert_form(&mut self, form: Form) {
        for prop in &form.props {
            self.props.insert(prop.full.clone(), prop.clone());
        }
        if !self.forms.contains_key(&form.name) {
            self.form_names.push(form.name.clone());
        }
        self.forms.insert(form.name.clone(), Arc::new(form));
    }

    fn new_tagprop(&self, name: &str, typedef: (String, Value), info: Value) -> SynResult<TagProp> {
        let typ = resolve_type(&self.types, &typedef.0, &typedef.1)?;
        if typ.is_array() {
            return Err(SynErr::new(
                "BadPropDef",
                "Tag props may not be array types (yet).",
            ));
        }
        Ok(TagProp {
            name: name.to_string(),
            stortype: typ.stortype,
            typedef,
            typ,
            info,
        })
    }

    /// The Synapse version the model data came from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// All types by name (ctors included).
    pub fn types(&self) -> &TypeMap {
        &self.types
    }

    /// A type by name.
    pub fn typ(&self, name: &str) -> Option<&Arc<Type>> {
        self.types.get(name)
    }

    /// A form by name.
    pub fn form(&self, name: &str) -> Option<&Arc<Form>> {
        self.forms.get(name)
    }

    /// A form by name, or `NoSuchForm` `No form named x.`
    pub fn req_form(&self, name: &str) -> SynResult<&Arc<Form>> {
        self.form(name).ok_or_else(|| no_such_form(name))
    }

    /// The form names in definition order.
    pub fn form_names(&self) -> &[String] {
        &self.form_names
    }

    /// A prop by full name: `inet:ipv4:asn`, `inet:ipv4.seen`, `.seen`.
    pub fn prop(&self, full: &str) -> Option<&Arc<Prop>> {
        self.props.get(full)
    }

    /// A universal prop: `.seen`, `.created`.
    pub fn univ(&self, name: &str) -> Option<&Arc<Prop>> {
        self.univs.iter().find(|u| u.name == name)
    }

    /// A tag prop definition.
    pub fn tagprop(&self, name: &str) -> Option<&Arc<TagProp>> {
        self.tagprops.iter().find(|t| t.name == name)
    }

    /// An interface definition.
    pub fn interface(&self, name: &str) -> Option<&Value> {
        self.interfaces
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i)
    }

    /// The syn:tag nodes that tag `text` needs, outermost first: `Foo.Bar` gives the norms
    /// of `foo` and `foo.bar` (each with its `base`, `depth` and `up` subs).
    pub fn tag_norms(&self, text: &str) -> SynResult<Vec<Norm>> {
        let tagtype = self
            .typ("syn:tag")
            .ok_or_else(|| SynErr::new("NoSuchType", "No type named syn:tag."))?;
        let full = tagtype.norm(self, &Value::from(text))?;
        let norm = full.valu.as_str().unwrap_or_default().to_string();
        let parts: Vec<&str> = norm.split('.').collect();
        let mut out = Vec::with_capacity(parts.len());
        for i in 1..parts.len() {
            out.push(tagtype.norm(self, &Value::from(parts[..i].join(".")))?);
        }
        out.push(full);
        Ok(out)
    }

    /// getModelDict(): `{types, forms, edges, univs, tagprops, interfaces}`.
    pub fn model_dict(&self) -> Value {
        let types = self
            .ctor_names()
            .chain(self.type_names.iter().map(String::as_str))
            .filter_map(|n| self.types.get(n))
            .map(|t| (Value::Str(t.name.clone()), t.pack()))
            .collect();
        let forms = self
            .form_names
            .iter()
            .filter_map(|n| self.forms.get(n))
            .map(|f| (Value::Str(f.name.clone()), f.pack()))
            .collect();
        let univs = self
            .univs
            .iter()
            .map(|u| (Value::Str(u.name.clone()), u.pack()))
            .collect();
        let tagprops = self
            .tagprops
            .iter()
            .map(|t| (Value::Str(t.name.clone()), t.pack()))
            .collect();
        let interfaces = self
            .interfaces
            .iter()
            .map(|(n, i)| (Value::Str(n.clone()), i.clone()))
            .collect();
        Value::map([
            ("types", Value::Map(types)),
            ("forms", Value::Map(forms)),
            ("edges", Value::Array(self.edges.clone())),
            ("univs", Value::Map(univs)),
            ("tagprops", Value::Map(tagprops)),
            ("interfaces", Value::Map(interfaces)),
        ])
    }

    /// getModelDefs(): `(('all', mdef),)` with mdef `{ctors, types, forms, univs, edges,
    /// tagprops, interfaces}`.
    pub fn model_defs(&self) -> Value {
        let types = self
            .type_names
            .iter()
            .filter_map(|n| self.types.get(n))
            .map(|t| t.typedef())
            .collect();
        let forms = self
            .form_names
            .iter()
            .filter_map(|n| self.forms.get(n))
            .map(|f| f.formdef())
            .collect();
        let mdef = Value::map([
            ("ctors", Value::Array(self.ctordefs.clone())),
            ("types", Value::Array(types)),
            ("forms", Value::Array(forms)),
            (
                "univs",
                Value::Array(self.univs.iter().map(|u| u.propdef()).collect()),
            ),
            ("edges", Value::Array(self.edges.clone())),
            (
                "tagprops",
                Value::Array(self.tagprops.iter().map(|t| t.tagpropdef()).collect()),
            ),
            (
                "interfaces",
                Value::Array(
                    self.interfaces
                        .iter()
                        .map(|(n, i)| Value::Array(vec![Value::Str(n.clone()), i.clone()]))
                        .collect(),
                ),
            ),
        ]);
        Value::Array(vec![Value::Array(vec![Value::from("all"), mdef])])
    }

    fn ctor_names(&self) -> impl Iterator<Item = &str> {
        self.ctordefs
            .iter()
            .filter_map(|d| d.as_array()?.first()?.as_str())
    }

    // -----------------------------------------------------------------------------------------
    // The extended model

    /// Add a form `_name` whose type extends `basetype` with `typeopts` (Synapse's
    /// `addForm(formname, basetype, typeopts, typeinfo)`).
    pub fn add_form(
        &mut self,
        formname: &str,
        basetype: &str,
        typeopts: &Value,
        typeinfo: &Value,
    ) -> SynResult<()> {
        if !matches!(typeopts, Value::Map(_)) {
            return Err(
                SynErr::bad_arg("Form type options should be a dict.").with("form", formname)
            );
        }
        if !matches!(typeinfo, Value::Map(_)) {
            return Err(SynErr::bad_arg("Form type info should be a dict.").with("form", formname));
        }
        if !formname.starts_with('_') {
            return Err(
                SynErr::new("BadFormDef", "Extended form must begin with \"_\"")
                    .with("form", formname),
            );
        }
        if self.forms.contains_key(formname) {
            return Err(SynErr::new(
                "DupFormName",
                format!("Form name already exists: {formname}"),
            ));
        }
        if self.types.contains_key(formname) {
            return Err(
                SynErr::new("DupTypeName", format!("Type already exists: {formname}."))
                    .with("name", formname),
            );
        }
        if !is_form_name(formname) {
            return Err(
                SynErr::new("BadFormDef", format!("Invalid form name {formname}"))
                    .with("name", formname),
            );
        }
        let base = self.types.get(basetype).ok_or_else(|| {
            SynErr::new("NoSuchType", format!("No type named {basetype}.")).with("name", basetype)
        })?;
        let typ = Arc::new(base.extend(formname, typeopts, typeinfo, &self.types)?);
        let mut form = Form {
            name: formname.to_string(),
            runt: false,
            typ: typ.clone(),
            info: empty_map(),
            props: Vec::new(),
            index: NameMap::default(),
        };
        for univ in &self.univs {
            let td = univ.typedef.clone();
            form.push_prop(Arc::new(Prop::new(
                &self.types,
                Some(formname),
                &univ.name,
                td,
                univ.info.clone(),
            )?));
        }
        let ifaces: Vec<String> = typ
            .info
            .get("interfaces")
            .and_then(Value::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        for iface in &ifaces {
            self.add_iface_props(&mut form, iface, &typ.info, 0)?;
        }
        self.types.insert(formname.to_string(), typ);
        self.type_names.push(formname.to_string());
        self.insert_form(form);
        Ok(())
    }

    /// Give `form` the props of interface `name` (and those it inherits), templates filled.
    fn add_iface_props(
        &self,
        form: &mut Form,
        name: &str,
        typeinfo: &Value,
        depth: usize,
    ) -> SynResult<()> {
        if depth > 16 {
            return Err(SynErr::new(
                "BadFormDef",
                format!("interface {name} nests too deeply"),
            ));
        }
        let iface = self.interface(name).ok_or_else(|| {
            SynErr::new(
                "NoSuchName",
                format!(
                    "Form {} depends on non-existent interface: {name}",
                    form.name
                ),
            )
        })?;
        let template = types::merge_opts(
            iface.get("template").unwrap_or(&empty_map()),
            typeinfo.get("template").unwrap_or(&empty_map()),
        );
        for pdef in iface.get("props").and_then(Value::as_array).unwrap_or(&[]) {
            let pdef = fill_template(pdef, &form.name, &template);
            let (pname, td, pinfo) = read_propdef(&pdef)?;
            if form.prop(&pname).is_none() {
                form.push_prop(Arc::new(Prop::new(
                    &self.types,
                    Some(&form.name),
                    &pname,
                    td,
                    pinfo,
                )?));
            }
        }
        for sub in iface
            .get("interfaces")
            .and_then(Value::as_array)
            .unwrap_or(&[])
        {
            if let Some(sub) = sub.as_str() {
                self.add_iface_props(form, sub, typeinfo, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Remove an extended form (and its type). It may not have extended props left.
    pub fn del_form(&mut self, formname: &str) -> SynResult<()> {
        if !formname.starts_with('_') {
            return Err(
                SynErr::new("BadFormDef", "Extended form must begin with \"_\"")
                    .with("form", formname),
            );
        }
        let form = self.req_form(formname)?.clone();
        let base: Vec<&str> = form
            .props
            .iter()
            .filter(|p| !p.name.starts_with('.'))
            .map(|p| p.name.as_str())
            .collect();
        let iface_props = self.iface_prop_names(&form.typ.info);
        let extra: Vec<&str> = base
            .into_iter()
            .filter(|p| !iface_props.contains(&p.to_string()))
            .collect();
        if !extra.is_empty() {
            return Err(SynErr::new(
                "CantDelForm",
                format!("Form has extended properties: {}", extra.join(", ")),
            ));
        }
        for p in &form.props {
            self.props.remove(&p.full);
        }
        self.forms.remove(formname);
        self.form_names.retain(|n| n != formname);
        self.types.remove(formname);
        self.type_names.retain(|n| n != formname);
        Ok(())
    }

    fn iface_prop_names(&self, typeinfo: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo: Vec<String> = typeinfo
            .get("interfaces")
            .and_then(Value::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        while let Some(name) = todo.pop() {
            if let Some(iface) = self.interface(&name) {
                for p in iface.get("props").and_then(Value::as_array).unwrap_or(&[]) {
                    if let Some(n) = p.as_array().and_then(|a| a.first()).and_then(Value::as_str) {
                        out.push(n.to_string());
                    }
                }
                for sub in iface
                    .get("interfaces")
                    .and_then(Value::as_array)
                    .unwrap_or(&[])
                {
                    if let Some(s) = sub.as_str() {
                        todo.push(s.to_string());
                    }
                }
            }
        }
        out
    }

    /// Add prop `prop` of type `tdef` `(type, opts)` to `form` (Synapse's `addFormProp`). The
    /// prop name must begin with `_` unless the form is an extended one.
    pub fn add_form_prop(
        &mut self,
        form: &str,
        prop: &str,
        tdef: &Value,
        info: &Value,
    ) -> SynResult<()> {
        let td = read_typedef(tdef).ok_or_else(|| {
            SynErr::bad_arg("Form property type definitions should be a tuple.").with("form", form)
        })?;
        if !matches!(info, Value::Map(_)) {
            return Err(
                SynErr::bad_arg("Form property definitions should be a dict.").with("form", form),
            );
        }
        if !prop.starts_with('_') && !form.starts_with('_') {
            return Err(SynErr::new(
                "BadPropDef",
                "Extended prop must begin with \"_\" or be added to an extended form.",
            )
            .with("prop", prop));
        }
        let mut newform = Form::clone(self.req_form(form)?);
        if newform.prop(prop).is_some() {
            return Err(SynErr::new(
                "DupPropName",
                format!("Cannot add duplicate form prop {form} {prop}"),
            )
            .with("form", form)
            .with("prop", prop));
        }
        let newprop = Arc::new(Prop::new(&self.types, Some(form), prop, td, info.clone())?);
        newform.push_prop(newprop);
        self.insert_form(newform);
        Ok(())
    }

    /// Remove an extended prop from a form.
    pub fn del_form_prop(&mut self, form: &str, prop: &str) -> SynResult<()> {
        let full = format!("{form}:{prop}");
        let is_ext = prop.starts_with('_') || form.starts_with('_');
        let mut newform = Form::clone(self.req_form(form)?);
        if !is_ext || prop.starts_with('.') || newform.prop(prop).is_none() {
            return Err(
                SynErr::new("NoSuchProp", format!("No ext prop named {full}"))
                    .with("form", form)
                    .with("prop", prop),
            );
        }
        newform.remove_prop(prop);
        self.props.remove(&full);
        self.insert_form(newform);
        Ok(())
    }

    /// Add universal prop `.name` (Synapse's `addUnivProp`): every form gets it too.
    pub fn add_univ_prop(&mut self, name: &str, tdef: &Value, info: &Value) -> SynResult<()> {
        let td = read_typedef(tdef).ok_or_else(|| {
            SynErr::bad_arg("Universal property type definitions should be a tuple.")
                .with("name", name)
        })?;
        if !matches!(info, Value::Map(_)) {
            return Err(
                SynErr::bad_arg("Universal property definitions should be a dict.")
                    .with("name", name),
            );
        }
        if !name.starts_with('_') {
            return Err(
                SynErr::new("BadPropDef", "ext univ name must start with \"_\"").with("name", name),
            );
        }
        let base = format!(".{name}");
        if self.props.contains_key(&base) {
            return Err(SynErr::new(
                "DupPropName",
                format!("Cannot add duplicate universal property {base}"),
            )
            .with("prop", name));
        }
        let univ = Arc::new(Prop::new(
            &self.types,
            None,
            &base,
            td.clone(),
            info.clone(),
        )?);
        let names = self.form_names.clone();
        for fname in names {
            let mut form = match self.forms.get(&fname) {
                Some(f) => Form::clone(f),
                None => continue,
            };
            let prop = Prop::new(&self.types, Some(&fname), &base, td.clone(), info.clone())?;
            form.push_prop(Arc::new(prop));
            self.insert_form(form);
        }
        self.props.insert(base, univ.clone());
        self.univs.push(univ);
        Ok(())
    }

    /// Remove an extended universal prop (from every form too).
    pub fn del_univ_prop(&mut self, name: &str) -> SynResult<()> {
        let base = format!(".{name}");
        if !name.starts_with('_') || self.univ(&base).is_none() {
            return Err(
                SynErr::new("NoSuchUniv", format!("No ext univ named {name}")).with("name", name),
            );
        }
        self.univs.retain(|u| u.name != base);
        self.props.remove(&base);
        let names = self.form_names.clone();
        for fname in names {
            if let Some(f) = self.forms.get(&fname) {
                let mut form = Form::clone(f);
                if let Some(p) = form.remove_prop(&base) {
                    self.props.remove(&p.full);
                    self.insert_form(form);
                }
            }
        }
        Ok(())
    }

    /// Add a tag prop definition (Synapse's `addTagProp(name, tdef, info)`).
    pub fn add_tag_prop(&mut self, name: &str, tdef: &Value, info: &Value) -> SynResult<()> {
        let td = read_typedef(tdef).ok_or_else(|| {
            SynErr::bad_arg("Tag property type definitions should be a tuple.").with("name", name)
        })?;
        if !matches!(info, Value::Map(_)) {
            return Err(
                SynErr::bad_arg("Tag property definitions should be a dict.").with("name", name),
            );
        }
        if self.tagprop(name).is_some() {
            return Err(
                SynErr::new("DupPropName", format!("Duplicate tag prop {name}")).with("name", name),
            );
        }
        let tp = self.new_tagprop(name, td, info.clone())?;
        self.tagprops.push(Arc::new(tp));
        Ok(())
    }

    /// Remove a tag prop definition.
    pub fn del_tag_prop(&mut self, name: &str) -> SynResult<()> {
        if self.tagprop(name).is_none() {
            return Err(
                SynErr::new("NoSuchTagProp", format!("No tag prop named {name}"))
                    .with("name", name),
            );
        }
        self.tagprops.retain(|t| t.name != name);
        Ok(())
    }
}

/// `NoSuchForm` `No form named x.`
pub fn no_such_form(name: &str) -> SynErr {
    SynErr::new("NoSuchForm", format!("No form named {name}.")).with("name", name)
}

/// Synapse's form name rule: `[a-z_][a-z0-9_]*(:[a-z0-9_]+)+`.
pub fn is_form_name(name: &str) -> bool {
    let mut parts = name.split(':');
    let first = parts.next().unwrap_or("");
    let mut rest = 0;
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let first_ok = word(first) && !first.as_bytes()[0].is_ascii_digit();
    for p in parts {
        if !word(p) {
            return false;
        }
        rest += 1;
    }
    first_ok && rest > 0
}

fn read_propdef(def: &Value) -> SynResult<(String, (String, Value), Value)> {
    match def.as_array() {
        Some([Value::Str(n), td, info]) => {
            let td = read_typedef(td).ok_or_else(|| bad_data("prop type", def))?;
            Ok((n.clone(), td, info.clone()))
        }
        _ => Err(bad_data("prop", def)),
    }
}

/// Fill an interface prop definition's `{name}` templates and `$self`.
fn fill_template(v: &Value, form: &str, template: &Value) -> Value {
    match v {
        Value::Str(s) if s == "$self" => Value::from(form),
        Value::Str(s) => {
            let mut out = s.clone();
            for (k, val) in template.as_map().unwrap_or(&[]) {
                if let (Some(k), Some(val)) = (k.as_str(), val.as_str()) {
                    out = out.replace(&format!("{{{k}}}"), val);
                }
            }
            Value::Str(out)
        }
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| fill_template(x, form, template)).collect())
        }
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, x)| {
                    (
                        fill_template(k, form, template),
                        fill_template(x, form, template),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
