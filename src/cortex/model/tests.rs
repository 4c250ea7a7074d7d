//! Model-level tests: loading, identity, the required forms and props, automatic node
//! information, the extended model, and the getModelDict / getModelDefs shapes.

use super::*;

fn model() -> Arc<Model> {
    Model::shared().expect("the compiled-in model loads")
}

#[test]
fn loads_complete() {
    let t0 = std::time::Instant::now();
    let m = Model::load().expect("load");
    eprintln!("model load took {:?}", t0.elapsed());
    assert_eq!(m.version(), "2.256.0");
    assert_eq!(m.ctordefs.len(), 53);
    assert_eq!(m.type_names.len(), 645);
    assert_eq!(m.form_names.len(), 595);
    assert_eq!(m.univs.len(), 2);
    assert_eq!(m.edges.len(), 90);
    assert_eq!(m.interfaces.len(), 21);
    let nprops: usize = m.forms.values().map(|f| f.props().len()).sum();
    assert_eq!(nprops, 5615);
    assert_eq!(m.forms.values().filter(|f| f.runt).count(), 7);
}

#[test]
fn stortypes_match_the_data() {
    let defs = data::parse_json(data::MODEL_JSON).unwrap();
    let m = model();
    for def in defs.get("types").and_then(Value::as_array).unwrap() {
        let a = def.as_array().unwrap();
        let name = a[0].as_str().unwrap();
        let want = a[2].get("stortype").and_then(Value::as_i64).unwrap() as u16;
        assert_eq!(m.typ(name).unwrap().stortype, want, "{name}");
    }
    assert_eq!(m.prop("ps:contact:names").unwrap().stortype, 0x8000 | 1);
    assert_eq!(m.prop("inet:ipv4.created").unwrap().stortype, 21);
}

#[test]
fn identity_is_synapses() {
    let m = model();
    let n = m
        .form("inet:ipv4")
        .unwrap()
        .norm(&m, &Value::from("1.2.3.4"))
        .unwrap();
    assert_eq!(
        hex::encode(buid("inet:ipv4", &n.valu)),
        "20153b758f9d5eaaa38e4f4a65c36da797c3e59e549620fa7c4895e1a920991f"
    );
    assert_eq!(
        hex::encode(buid("inet:fqdn", &Value::from("vertex.link"))),
        "3ecd51e142a5acfcde42c02ff5c68378bfaf1eaf49fe9721550b6e7d6013b699"
    );
}

#[test]
fn required_forms_and_props_exist() {
    let m = model();
    let manifest = [
        "edge:refs",
        "file:base",
        "file:bytes",
        "file:ismime",
        "file:mime",
        "hash:md5",
        "hash:sha1",
        "hash:sha256",
        "inet:asn",
        "inet:dns:a",
        "inet:email",
        "inet:fqdn",
        "inet:ipv4",
        "inet:url",
        "inet:user",
        "it:dev:str",
        "ou:name",
        "ou:org",
        "ps:name",
        "ps:person",
        "syn:tag",
    ];
    let listed = [
        "inet:ipv6",
        "inet:cidr4",
        "inet:server",
        "inet:client",
        "inet:dns:aaaa",
        "inet:dns:cname",
        "inet:dns:mx",
        "inet:dns:ns",
        "inet:dns:txt",
        "inet:web:acct",
        "hash:sha512",
        "file:path",
        "ps:contact",
        "geo:place",
        "risk:vuln",
        "tel:phone",
    ];
    for f in manifest.iter().chain(&listed) {
        assert!(m.form(f).is_some(), "form {f}");
    }
    let props = [
        "inet:fqdn:domain",
        "inet:fqdn:host",
        "inet:fqdn:zone",
        "inet:fqdn:issuffix",
        "inet:url:proto",
        "inet:url:port",
        "inet:url:path",
        "inet:url:fqdn",
        "inet:url:ipv4",
        "inet:email:user",
        "inet:email:fqdn",
        "file:bytes:md5",
        "file:bytes:sha1",
        "file:bytes:sha256",
        "file:bytes:size",
        "file:bytes:mime",
        "inet:ipv4:asn",
        "inet:ipv4.seen",
        "inet:ipv4.created",
        "syn:tag:base",
        "syn:tag:depth",
        "syn:tag:up",
        "ps:contact:names",
    ];
    for p in props {
        assert!(m.prop(p).is_some(), "prop {p}");
    }
    assert!(m.univ(".seen").is_some() && m.univ(".created").is_some());
    assert!(m.prop(".created").unwrap().ro);
}

#[test]
fn props_name_the_nodes_they_add() {
    let m = model();
    // `:asn=10` adds inet:asn=10: the prop's type is a form.
    let asn = m.prop("inet:ipv4:asn").unwrap();
    assert!(m.form(&asn.typ.name).is_some());
    // `:loc` does not: loc is not a form.
    assert!(m.form(&m.prop("inet:ipv4:loc").unwrap().typ.name).is_none());
    // `#a.b` adds syn:tag=a and syn:tag=a.b.
    let tags = m.tag_norms("A.b").unwrap();
    let vals: Vec<&str> = tags.iter().map(|n| n.valu.as_str().unwrap()).collect();
    assert_eq!(vals, ["a", "a.b"]);
    assert_eq!(tags[1].sub("up"), Some(&Value::from("a")));
}

#[test]
fn extended_model() {
    let mut m = Model::clone(&model());
    let empty = Value::Map(vec![]);
    let strdef = Value::Array(vec!["str".into(), empty.clone()]);

    assert_eq!(
        m.add_form("foo:bar", "str", &empty, &empty)
            .unwrap_err()
            .name,
        "BadFormDef"
    );
    m.add_form(
        "_foo:bar",
        "str",
        &Value::map([("lower", Value::Bool(true))]),
        &empty,
    )
    .unwrap();
    assert_eq!(
        m.add_form("_foo:bar", "str", &empty, &empty)
            .unwrap_err()
            .name,
        "DupFormName"
    );
    let form = m.form("_foo:bar").unwrap().clone();
    assert!(form.prop(".seen").is_some() && form.prop(".created").is_some());
    assert_eq!(
        form.norm(&m, &Value::from("HeLLo")).unwrap().valu,
        Value::from("hello")
    );
    assert_eq!(
        m.add_form("_x:y", "newp", &empty, &empty).unwrap_err().name,
        "NoSuchType"
    );

    assert_eq!(
        m.add_form_prop("inet:ipv4", "note", &strdef, &empty)
            .unwrap_err()
            .name,
        "BadPropDef"
    );
    m.add_form_prop("inet:ipv4", "_note", &strdef, &empty)
        .unwrap();
    assert!(m.prop("inet:ipv4:_note").is_some());
    assert_eq!(
        m.add_form_prop("inet:ipv4", "_note", &strdef, &empty)
            .unwrap_err()
            .name,
        "DupPropName"
    );
    m.add_form_prop(
        "_foo:bar",
        "size",
        &Value::Array(vec!["int".into(), empty.clone()]),
        &empty,
    )
    .unwrap();
    assert_eq!(m.del_form("_foo:bar").unwrap_err().name, "CantDelForm");
    m.del_form_prop("_foo:bar", "size").unwrap();
    m.del_form("_foo:bar").unwrap();
    assert!(m.form("_foo:bar").is_none() && m.typ("_foo:bar").is_none());

    let intdef = Value::Array(vec!["int".into(), empty.clone()]);
    assert_eq!(
        m.add_univ_prop("risk", &intdef, &empty).unwrap_err().name,
        "BadPropDef"
    );
    m.add_univ_prop("_risk", &intdef, &empty).unwrap();
    assert!(m.univ("._risk").is_some());
    assert!(m.prop("inet:fqdn._risk").is_some());
    m.del_univ_prop("_risk").unwrap();
    assert!(m.prop("inet:fqdn._risk").is_none());

    m.add_tag_prop("score", &intdef, &empty).unwrap();
    let tp = m.tagprop("score").unwrap();
    assert_eq!(
        tp.typ.norm(&m, &Value::from("5")).unwrap().valu,
        Value::Int(5)
    );
    assert_eq!(
        m.add_tag_prop("score", &intdef, &empty).unwrap_err().name,
        "DupPropName"
    );
    let arrdef = Value::Array(vec![
        "array".into(),
        Value::map([("type", Value::from("int"))]),
    ]);
    assert_eq!(
        m.add_tag_prop("many", &arrdef, &empty).unwrap_err().name,
        "BadPropDef"
    );
    m.del_tag_prop("score").unwrap();
    assert_eq!(m.del_tag_prop("score").unwrap_err().name, "NoSuchTagProp");

    // The shared model is untouched.
    assert!(model().prop("inet:ipv4:_note").is_none());
}

#[test]
fn model_dict_shape() {
    let m = model();
    let d = m.model_dict();
    let keys: Vec<&str> = d
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["types", "forms", "edges", "univs", "tagprops", "interfaces"]
    );
    assert_eq!(d.get("types").unwrap().as_map().unwrap().len(), 698);
    let int = d.get("types").unwrap().get("int").unwrap();
    assert_eq!(int.get("stortype"), Some(&Value::Int(9)));
    assert_eq!(int.get("opts").unwrap().get("size"), Some(&Value::Int(8)));
    let ipv4 = d.get("forms").unwrap().get("inet:ipv4").unwrap();
    assert_eq!(ipv4.get("name"), Some(&Value::from("inet:ipv4")));
    let created = ipv4.get("props").unwrap().get(".created").unwrap();
    assert_eq!(created.get("full"), Some(&Value::from("inet:ipv4.created")));
    assert_eq!(created.get("ro"), Some(&Value::Bool(true)));
    assert_eq!(created.get("stortype"), Some(&Value::Int(21)));
    assert!(d.get("univs").unwrap().get(".seen").is_some());
}

#[test]
fn model_defs_round_trip() {
    let m = model();
    let defs = m.model_defs();
    let [pair] = defs.as_array().unwrap() else {
        panic!("one pair")
    };
    let [name, mdef] = pair.as_array().unwrap() else {
        panic!("a pair")
    };
    assert_eq!(name, &Value::from("all"));
    // The defs are the data we loaded.
    let data = data::parse_json(data::MODEL_JSON).unwrap();
    for key in [
        "ctors",
        "types",
        "forms",
        "univs",
        "tagprops",
        "interfaces",
        "edges",
    ] {
        assert_eq!(mdef.get(key), data.get(key), "{key}");
    }
    // And they load back into the same model.
    let again = Model::from_defs(&Value::map([
        ("synapse", Value::from("2.256.0")),
        ("ctors", mdef.get("ctors").unwrap().clone()),
        ("types", mdef.get("types").unwrap().clone()),
        ("forms", mdef.get("forms").unwrap().clone()),
        ("univs", mdef.get("univs").unwrap().clone()),
        ("interfaces", mdef.get("interfaces").unwrap().clone()),
        ("edges", mdef.get("edges").unwrap().clone()),
    ]))
    .unwrap();
    assert_eq!(again.model_defs(), defs);
}

#[test]
fn bad_model_data_is_an_error() {
    let bad = Value::map([("ctors", Value::Array(vec![Value::from("x")]))]);
    assert_eq!(Model::from_defs(&bad).unwrap_err().name, "BadModelData");
    assert!(is_form_name("inet:ipv4") && is_form_name("_foo:bar"));
    assert!(!is_form_name("foo") && !is_form_name("Foo:bar") && !is_form_name("1a:b"));
}
