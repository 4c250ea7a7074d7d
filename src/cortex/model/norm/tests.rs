//! Per-ctor norms with the exact outputs and messages of storm.md §3 (observed on Synapse
//! 2.256). The broad comparison with a live Python cortex is tests/model_norm.rs.

use crate::cortex::model::{Model, Norm};
use crate::msgpack::Value;
use std::sync::Arc;

fn model() -> Arc<Model> {
    Model::shared().expect("model loads")
}

fn norm(t: &str, v: Value) -> Result<Norm, (String, String)> {
    let m = model();
    let typ = m
        .typ(t)
        .or_else(|| m.prop(t).map(|p| &p.typ))
        .expect(t)
        .clone();
    typ.norm(&m, &v)
        .map_err(|e| (e.name.clone(), e.mesg().to_string()))
}

fn ok(t: &str, v: impl Into<Value>) -> Value {
    norm(t, v.into()).expect("norms").valu
}

fn err(t: &str, v: impl Into<Value>) -> String {
    match norm(t, v.into()) {
        Ok(n) => panic!("{t} normed to {}", n.valu),
        Err((_, mesg)) => mesg,
    }
}

fn repr(t: &str, v: impl Into<Value>) -> Value {
    let m = model();
    let typ = m.typ(t).expect(t).clone();
    let n = typ.norm(&m, &v.into()).expect("norms");
    typ.repr(&m, &n.valu).expect("repr")
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn s(x: &str) -> Value {
    Value::from(x)
}

fn i(x: i128) -> Value {
    Value::Int(x)
}

#[test]
fn ints() {
    assert_eq!(ok("int", " 42 "), i(42));
    assert_eq!(ok("int", "0x10"), i(16));
    assert_eq!(ok("int", 1.9), i(1));
    assert_eq!(ok("int", true), i(1));
    assert_eq!(
        err("int", "1e3"),
        "invalid literal for int() with base 0: '1e3'"
    );
    assert_eq!(
        err("int", i(1 << 63)),
        "value is above max=9223372036854775807"
    );
    assert_eq!(
        err("int", i(-(1 << 63) - 1)),
        "value is below min=-9223372036854775808"
    );
    assert_eq!(err("inet:port", i(65536)), "value is above max=65535");
    assert_eq!(err("inet:port", i(-1)), "value is below min=0");
    assert_eq!(ok("meta:priority", "HIGH"), i(40));
    assert_eq!(repr("meta:priority", "HIGH"), s("high"));
    assert_eq!(repr("meta:priority", "0x0a"), s("lowest"));
    assert_eq!(repr("meta:priority", i(35)), s("35"));
}

#[test]
fn strs() {
    assert_eq!(ok("it:dev:str", "  Hello World  "), s("  Hello World  "));
    assert_eq!(ok("str", 1.5), s("1.5"));
    assert_eq!(ok("str", true), s("true"));
    assert_eq!(
        err("str", arr(vec![s("a")])),
        "no norm for type: <class 'list'>."
    );
    assert_eq!(ok("inet:user", " Visi "), s(" visi "));
    assert_eq!(ok("ps:name", " VISI   kensho "), s("visi kensho"));
    assert_eq!(
        ok("ou:name", "The  Vertex   Project"),
        s("the  vertex   project")
    );
    assert_eq!(
        err("it:mitre:attack:status", "CURRENT"),
        "Value not in enums"
    );
    assert_eq!(ok("it:sec:cve", "CVE-2020-1234"), s("cve-2020-1234"));
    assert_eq!(
        err("it:sec:cve", "CVE-20-1"),
        "[CVE-20-1] does not match [(?i)^CVE-[0-9]{4}-[0-9]{4,}$]"
    );
}

#[test]
fn bools() {
    for v in [i(2), i(-1), s("yes"), s(" true "), s("1")] {
        assert_eq!(ok("bool", v), i(1));
    }
    for v in [i(0), s("FALSE"), s("off"), s("0")] {
        assert_eq!(ok("bool", v), i(0));
    }
    assert_eq!(err("bool", "maybe"), "Failed to norm bool");
    assert_eq!(repr("bool", "yes"), s("true"));
}

#[test]
fn times() {
    assert_eq!(ok("time", "2020"), i(1577836800000));
    assert_eq!(ok("time", "20200102"), i(1577923200000));
    assert_eq!(ok("time", "2020-01-02 03:04:05.678"), i(1577934245678));
    assert_eq!(ok("time", "2020-01-02T03:04:05.123456Z"), i(1577934245123));
    assert_eq!(ok("time", "2020-01-02 03:04:05-05:00"), i(1577952245000));
    assert_eq!(ok("time", "2020-01-02T03:04:05+0100"), i(1577930645000));
    assert_eq!(ok("time", "?"), i(i64::MAX as i128));
    assert_eq!(repr("time", "?"), s("?"));
    assert_eq!(repr("time", i(-1)), s("1969/12/31 23:59:59.999"));
    assert_eq!(
        repr("time", "2020-01-02 03:04:05.678"),
        s("2020/01/02 03:04:05.678")
    );
    assert_eq!(
        err("time", i(253402300800000)),
        "Time exceeds max size [253402300799999] allowed for a non-future marker, got 253402300800000"
    );
    assert_eq!(err("time", "*"), "Unknown time format for *");
    assert_eq!(
        err("time", "2020-13-01"),
        "Error parsing time \"2020-13-01\"; unconverted data remains: 1"
    );
    assert_eq!(
        err("time", "2020-02-30"),
        "Error parsing time \"2020-02-30\"; day is out of range for month"
    );
    assert_eq!(err("time", 1.5), "no norm for type: <class 'float'>.");
    let e = norm("time", s("2020-01-01 +1 day")).unwrap_err();
    assert_eq!(
        e,
        (
            "ValueError".into(),
            "invalid literal for int() with base 0: '01'".into()
        )
    );
    let now = crate::clock::now_ms() as i128;
    let day_ago = ok("time", "-1 day").as_i64().unwrap() as i128;
    assert!((now - 86_400_000 - day_ago).abs() < 60_000);
}

#[test]
fn ivals() {
    let iv = |a: i128, b: i128| arr(vec![i(a), i(b)]);
    assert_eq!(
        ok("ival", arr(vec![s("2020"), s("2021")])),
        iv(1577836800000, 1609459200000)
    );
    assert_eq!(
        ok("ival", arr(vec![s("2020"), s("?")])),
        iv(1577836800000, i64::MAX as i128)
    );
    assert_eq!(
        ok("ival", arr(vec![s("2020"), s("-1 day")])),
        iv(1577750400000, 1577836800000)
    );
    assert_eq!(
        ok("ival", arr(vec![s("2020"), s("+-1 day")])),
        iv(1577750400000, 1577923200000)
    );
    assert_eq!(ok("ival", s("2020")), iv(1577836800000, 1577836800001));
    assert_eq!(
        err("ival", arr(vec![s("2021"), s("2020")])),
        "Ival range must in (min, max) format"
    );
    assert_eq!(
        err("ival", arr(vec![s("?"), s("?")])),
        "Ival upper range cannot exceed future size marker"
    );
    assert_eq!(
        err("ival", arr(vec![s("2020")])),
        "Ival _normPyIter requires 2 items"
    );
    assert_eq!(
        err("ival", Value::Nil),
        "no norm for type: <class 'NoneType'>."
    );
    assert_eq!(
        repr("ival", arr(vec![s("2020"), s("?")])),
        arr(vec![s("2020/01/01 00:00:00.000"), s("?")])
    );
}

#[test]
fn guids_and_hashes() {
    let g = ok("guid", "*");
    assert!(crate::guid::is_guid(g.as_str().unwrap()));
    assert_eq!(
        ok("guid", arr(vec![s("foo"), s("bar")])),
        s("4aa67af67d4b7be2d66b851d98ceaec8")
    );
    assert_eq!(
        ok("guid", arr(vec![s("c1")])),
        s("b2370d31a3c51e16a768525411ece28f")
    );
    assert_eq!(err("guid", "newp"), "valu is not a guid.");
    assert_eq!(err("guid", i(1)), "no norm for type: <class 'int'>.");
    assert_eq!(ok("hex", i(255)), s("ff"));
    assert_eq!(err("hex", "zz"), "Non-hexadecimal digit found");
    assert_eq!(err("hex", ""), "No string left after stripping.");
    assert_eq!(
        ok("hash:md5", "D41D8CD98F00B204E9800998ECF8427E"),
        s("d41d8cd98f00b204e9800998ecf8427e")
    );
    assert_eq!(
        ok("hash:md5", "41d8cd98f00b204e9800998ecf8427e"),
        s("041d8cd98f00b204e9800998ecf8427e")
    );
    assert_eq!(
        err("hash:md5", "d41d8cd98f00b204e9800998ecf8427e0"),
        "Invalid width."
    );
}

#[test]
fn locs_and_tags() {
    assert_eq!(ok("loc", "us. va .  Reston"), s("us.va.reston"));
    assert_eq!(ok("loc", "US VA"), s("us va"));
    assert_eq!(ok("loc", "us..va"), s("us..va"));
    let n = norm("syn:tag", s(" foo.bar ")).unwrap();
    assert_eq!(n.valu, s("foo.bar"));
    assert_eq!(
        n.subs,
        vec![
            ("base".into(), s("bar")),
            ("depth".into(), i(1)),
            ("up".into(), s("foo"))
        ]
    );
    assert_eq!(ok("syn:tag", "Foo.Bar"), s("foo.bar"));
    assert_eq!(ok("syn:tag", "foo-bar"), s("foo_bar"));
    assert_eq!(ok("syn:tag", "foo.b@r"), s("foo.b_r"));
    assert_eq!(ok("syn:tag", "Ünicode.tag"), s("ünicode.tag"));
    assert_eq!(ok("syn:tag", "FOO.$bar"), s("foo.bar"));
    for bad in ["foo..bar", ".foo", "foo.", "", "foo.*"] {
        assert_eq!(
            err("syn:tag", bad),
            "Each tag part must be non-zero length."
        );
    }
    let depth0 = norm("syn:tag", s("foo")).unwrap();
    assert!(depth0.sub("up").is_none());
}

#[test]
fn ndefs_comps_arrays() {
    let n = norm("ndef", arr(vec![s("inet:ipv4"), s("1.2.3.4")])).unwrap();
    assert_eq!(n.valu, arr(vec![s("inet:ipv4"), i(16909060)]));
    assert_eq!(n.adds[0].0, "inet:ipv4");
    assert_eq!(
        repr("ndef", arr(vec![s("inet:ipv4"), s("1.2.3.4")])),
        arr(vec![s("inet:ipv4"), s("1.2.3.4")])
    );
    let e = norm("ndef", arr(vec![s("newp:form"), s("x")])).unwrap_err();
    assert_eq!(e, ("NoSuchForm".into(), "No form named newp:form.".into()));
    assert_eq!(err("ndef", "x"), "no norm for type: <class 'str'>.");

    let a = norm("inet:dns:a", arr(vec![s("WWW.vertex.link"), i(16909060)])).unwrap();
    assert_eq!(a.valu, arr(vec![s("www.vertex.link"), i(16909060)]));
    let keys: Vec<&str> = a.subs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["fqdn", "fqdn:host", "fqdn:domain", "ipv4", "ipv4:type"]
    );
    let adds: Vec<&str> = a.adds.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(adds, ["inet:fqdn", "inet:ipv4"]);
    assert_eq!(
        repr("inet:dns:a", a.valu.clone()),
        arr(vec![s("www.vertex.link"), s("1.2.3.4")])
    );
    assert_eq!(
        ok("inet:web:acct", "vertex.link/visi"),
        arr(vec![s("vertex.link"), s("visi")])
    );
    assert_eq!(
        repr("inet:web:acct", "vertex.link/visi"),
        s("vertex.link/visi")
    );
    assert_eq!(
        err("inet:dns:a", arr(vec![s("a")])),
        "invalid number of fields given for norming: ['a']"
    );

    let names = norm(
        "ps:contact:names",
        arr(vec![s("b"), s("a"), s("b"), s("A")]),
    )
    .unwrap();
    assert_eq!(names.valu, arr(vec![s("a"), s("b")]));
    assert_eq!(names.adds.len(), 4, "every item is a ps:name node");
}

#[test]
fn inet() {
    let n = norm("inet:ipv4", s("1.2.3.4")).unwrap();
    assert_eq!(n.valu, i(16909060));
    assert_eq!(n.sub("type"), Some(&s("unicast")));
    assert_eq!(ok("inet:ipv4", "1.2.3"), i(0x01020003));
    assert_eq!(repr("inet:ipv4", "010.1.1.1"), s("8.1.1.1"));
    assert_eq!(
        norm("inet:ipv4", s("10.0.0.1")).unwrap().sub("type"),
        Some(&s("private"))
    );
    for bad in [
        " 1.2.3.4 ",
        "1.2.3.4/24",
        "256.1.1.1",
        "1.2.3.4:80",
        "::ffff:1.2.3.4",
        "1.2.3.4.",
        "",
    ] {
        assert_eq!(
            err("inet:ipv4", bad),
            "illegal IP address string passed to inet_aton",
            "{bad}"
        );
    }
    assert_eq!(err("inet:ipv4", i(-1)), "Value outside of IPv4 range");

    assert_eq!(
        ok("inet:ipv6", "2001:0db8:0000:0000:0000:0000:0000:0001"),
        s("2001:db8::1")
    );
    let v6 = norm("inet:ipv6", s("1.2.3.4")).unwrap();
    assert_eq!(v6.valu, s("::ffff:1.2.3.4"));
    assert_eq!(v6.sub("ipv4"), Some(&i(16909060)));
    assert_eq!(ok("inet:ipv6", i(1)), s("::1"));
    assert_eq!(
        err("inet:ipv6", "[::1]"),
        "Only hex digits permitted in '[' in '[::1]'"
    );

    let c = norm("inet:cidr4", s("1.2.3.4/24")).unwrap();
    assert_eq!(c.valu, s("1.2.3.0/24"));
    assert_eq!(c.sub("network"), Some(&i(16909056)));
    assert_eq!(c.sub("broadcast"), Some(&i(16909311)));
    assert_eq!(err("inet:cidr4", "1.2.3.4"), "Invalid/Missing CIDR Mask");
    assert_eq!(err("inet:cidr4", "1.2.3.4/33"), "Invalid CIDR Mask");
    assert_eq!(
        err("inet:cidr6", "2001:db8::1/64"),
        "2001:db8::1/64 has host bits set"
    );

    let f = norm("inet:fqdn", s("WWW.Vertex.Link")).unwrap();
    assert_eq!(f.valu, s("www.vertex.link"));
    assert_eq!(
        f.subs,
        vec![
            ("host".into(), s("www")),
            ("domain".into(), s("vertex.link"))
        ]
    );
    assert_eq!(
        norm("inet:fqdn", s("link")).unwrap().sub("issuffix"),
        Some(&i(1))
    );
    assert_eq!(ok("inet:fqdn", "ＶＥＲＴＥＸ.link"), s("vertex.link"));
    assert_eq!(
        ok("inet:fqdn", "bücher.example"),
        s("xn--bcher-kva.example")
    );
    assert_eq!(
        repr("inet:fqdn", "xn--bcher-kva.example"),
        s("bücher.example")
    );
    assert_eq!(
        err("inet:fqdn", "*.vertex.link"),
        "FQDN failed to match fqdnre [^[\\w._-]+$]"
    );
    assert_eq!(
        err("inet:fqdn", "1.2.3.4"),
        "FQDN Got an IP address instead"
    );
    assert_eq!(
        err("inet:fqdn", "a..b"),
        "Failed to encode/decode the value with idna/utf8."
    );

    let u = norm("inet:url", s("http://www.Vertex.link/foo?x=1")).unwrap();
    assert_eq!(u.valu, s("http://www.vertex.link/foo?x=1"));
    assert_eq!(u.sub("port"), Some(&i(80)));
    assert_eq!(u.sub("base"), Some(&s("http://www.vertex.link/foo")));
    assert_eq!(u.sub("fqdn"), Some(&s("www.vertex.link")));
    let u4 = norm("inet:url", s("HTTPS://1.2.3.4:8080/a/b")).unwrap();
    assert_eq!(u4.sub("ipv4"), Some(&i(16909060)));
    assert_eq!(u4.sub("port"), Some(&i(8080)));
    assert!(
        norm("inet:url", s("hxxp://vertex.link/"))
            .unwrap()
            .sub("port")
            .is_none()
    );
    assert_eq!(
        err("inet:url", "vertex.link/foo"),
        "Invalid/Missing protocol"
    );
    assert_eq!(
        err("inet:url", "http://vertex.link:99999"),
        "value is above max=65535"
    );

    let e = norm("inet:email", s("VISI+x@vertex.link")).unwrap();
    assert_eq!(e.valu, s("visi+x@vertex.link"));
    assert_eq!(e.sub("plus"), Some(&s("x")));
    assert_eq!(e.sub("base"), Some(&s("VISI@vertex.link")));
    assert_eq!(
        err("inet:email", "visi"),
        "Email address expected in <user>@<fqdn> format, got \"visi\""
    );
}

#[test]
fn files() {
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let n = norm("file:bytes", s(sha)).unwrap();
    assert_eq!(n.valu, s(&format!("sha256:{sha}")));
    assert_eq!(n.sub("sha256"), Some(&s(sha)));
    let h = norm("file:bytes", s("hex:41")).unwrap();
    assert_eq!(h.sub("md5"), Some(&s("7fc56270e7a70fa81a5935b72eacbe29")));
    assert_eq!(h.sub("size"), Some(&i(1)));
    assert!(ok("file:bytes", "*").as_str().unwrap().starts_with("guid:"));
    assert_eq!(
        err("file:bytes", "newp"),
        "unadorned file:bytes value is not a sha256 - valu=newp"
    );
    assert_eq!(
        err("file:bytes", "guid:newp"),
        "guid is not a guid - valu=newp"
    );
    assert!(
        err("file:bytes", format!("SHA256:{sha}").as_str())
            .starts_with("unable to norm as file:bytes")
    );
    assert_eq!(
        ok("file:path", "C:\\Windows\\Foo.dll"),
        s("c:/windows/foo.dll")
    );
    assert_eq!(ok("file:base", "Foo.EXE"), s("foo.exe"));
}

#[test]
fn unsupported_ctors_say_so() {
    let e = norm("it:sec:cpe", s("cpe:2.3:a:vertex:synapse:*:*:*:*:*:*:*:*")).unwrap_err();
    assert_eq!(e.0, "NoSuchImpl");
    assert!(e.1.contains("synapse.models.infotech.Cpe23Str"), "{}", e.1);
}

#[test]
fn lift_cmprs() {
    let m = model();
    let ip = m.typ("inet:ipv4").unwrap().clone();
    let c = ip.stor_cmprs(&m, "=", &s("1.2.3.0/24")).unwrap();
    assert_eq!(c[0].cmpr, "range=");
    assert_eq!(c[0].valu, arr(vec![i(16909056), i(16909311)]));
    let fq = m.typ("inet:fqdn").unwrap().clone();
    assert_eq!(
        fq.stor_cmprs(&m, "=", &s("*.Vertex.Link")).unwrap()[0].valu,
        s("*.vertex.link")
    );
    assert_eq!(
        fq.stor_cmprs(&m, "=", &s("a*b")).unwrap_err().mesg(),
        "Wild card may only appear at the beginning."
    );
    let asn = m.typ("inet:asn").unwrap().clone();
    assert_eq!(
        asn.stor_cmprs(&m, "!=", &s("10")).unwrap_err().mesg(),
        "Type (inet:asn) has no cmpr: \"!=\"."
    );
    assert_eq!(asn.stor_cmprs(&m, ">=", &s("10")).unwrap()[0].valu, i(10));
    assert_eq!(
        asn.stor_cmprs(&m, "range=", &arr(vec![s("1"), s("0x10")]))
            .unwrap()[0]
            .valu,
        arr(vec![i(1), i(16)])
    );
    let tm = m.typ("time").unwrap().clone();
    let w = tm.stor_cmprs(&m, "=", &s("2020*")).unwrap();
    assert_eq!(
        (w[0].cmpr.as_str(), &w[0].valu),
        ("range=", &arr(vec![i(1577836800000), i(1609459200000)]))
    );
    let loc = m.typ("loc").unwrap().clone();
    assert_eq!(loc.stor_cmprs(&m, "^=", &s("US")).unwrap()[0].valu, s("us"));
    assert_eq!(
        asn.stor_cmprs(&m, "in=", &arr(vec![s("1"), s("2")]))
            .unwrap()
            .len(),
        2
    );
}
