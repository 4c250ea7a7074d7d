//! The normalization contract: for each tricky input of each type, syn's norm must equal what a
//! real Python Synapse 2.256 cortex returns (`core.model.type(t).norm(v)`): the same value, the
//! same subs and repr, or an error of the same class. Error messages that differ are reported.
//!
//! All cases go to one Python run (tests/py/norm_cases.py). Without the peer the test skips.

mod common;

use std::collections::BTreeMap;

use serde_json::{Value as J, json};
use syn::cortex::model::{Model, Norm};
use syn::msgpack::Value;

/// How a case's result is compared.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Norm, subs and repr equal.
    Exact,
    /// Only success or the error class (random guids).
    Shape,
    /// Ints within two minutes (times relative to now).
    Near,
}
use Mode::*;

/// (type, input as JSON, mode)
const CASES: &[(&str, &str, Mode)] = &[
    // int
    ("int", r#""10""#, Exact),
    ("int", r#"" 42 ""#, Exact),
    ("int", r#""-5""#, Exact),
    ("int", r#""0x10""#, Exact),
    ("int", r#""0o10""#, Exact),
    ("int", r#""0b101""#, Exact),
    ("int", "1.9", Exact),
    ("int", "true", Exact),
    ("int", r#""1e3""#, Exact),
    ("int", r#""1.5""#, Exact),
    ("int", r#""abc""#, Exact),
    ("int", r#""""#, Exact),
    ("int", "9223372036854775808", Exact),
    ("int", "-9223372036854775809", Exact),
    ("int", r#""010""#, Exact),
    ("int", r#""1_000""#, Exact),
    ("int", "[1]", Exact),
    ("inet:port", "65536", Exact),
    ("inet:port", "-1", Exact),
    ("inet:port", r#""80""#, Exact),
    ("inet:asn", r#""10""#, Exact),
    ("inet:asn", "-1", Exact),
    ("meta:priority", r#""HIGH""#, Exact),
    ("meta:priority", r#""0x0a""#, Exact),
    ("meta:priority", "35", Exact),
    // str
    ("it:dev:str", r#""  Hello World  ""#, Exact),
    ("str", "5", Exact),
    ("str", "1.5", Exact),
    ("str", "1.0", Exact),
    ("str", "true", Exact),
    ("str", r#"["a"]"#, Exact),
    ("inet:user", r#"" Visi ""#, Exact),
    ("ps:name", r#"" VISI   kensho ""#, Exact),
    ("ou:name", r#""The  Vertex   Project""#, Exact),
    ("ou:name", r#""  Vertex  ""#, Exact),
    ("it:mitre:attack:status", r#""CURRENT""#, Exact),
    ("it:mitre:attack:status", r#""current""#, Exact),
    ("it:sec:cve", r#""CVE-2020-1234""#, Exact),
    ("it:sec:cve", r#""CVE-20-1""#, Exact),
    ("inet:mac", r#""aabbccddeeff""#, Exact),
    ("inet:mac", r#""AA:BB:CC:DD:EE:FF""#, Exact),
    ("file:mime", r#""Text/Plain""#, Exact),
    // bool
    ("bool", "1", Exact),
    ("bool", "2", Exact),
    ("bool", "-1", Exact),
    ("bool", "true", Exact),
    ("bool", r#""true""#, Exact),
    ("bool", r#""yes""#, Exact),
    ("bool", r#"" true ""#, Exact),
    ("bool", r#""FALSE""#, Exact),
    ("bool", r#""off""#, Exact),
    ("bool", r#""0""#, Exact),
    ("bool", r#""maybe""#, Exact),
    ("bool", r#""""#, Exact),
    ("bool", "1.5", Exact),
    // time
    ("time", r#""2020""#, Exact),
    ("time", r#""2020-01""#, Exact),
    ("time", r#""2020-01-02""#, Exact),
    ("time", r#""2020/01/02""#, Exact),
    ("time", r#""20200102""#, Exact),
    ("time", r#""2020-01-02 03:04:05""#, Exact),
    ("time", r#""2020-01-02 03:04:05.678""#, Exact),
    ("time", r#""20200102030405678""#, Exact),
    ("time", r#""2020-01-02T03:04:05.123456Z""#, Exact),
    ("time", r#""2020-01-02 03:04:05-05:00""#, Exact),
    ("time", r#""2020-01-02 03:04:05 EST""#, Exact),
    ("time", r#""2020-01-02T03:04:05+0100""#, Exact),
    ("time", r#""Tue, 21 Dec 2021 11:00:00 GMT""#, Exact),
    ("time", r#""now""#, Near),
    ("time", r#""-1 day""#, Near),
    ("time", r#""+1 hour""#, Near),
    ("time", r#""?""#, Exact),
    ("time", "0", Exact),
    ("time", "-1", Exact),
    ("time", "1577836800000", Exact),
    ("time", "253402300799999", Exact),
    ("time", "253402300800000", Exact),
    ("time", r#""*""#, Exact),
    ("time", r#""newp""#, Exact),
    ("time", r#""""#, Exact),
    ("time", r#""10000""#, Exact),
    ("time", r#""2020.5""#, Exact),
    ("time", r#""2020-13-01""#, Exact),
    ("time", r#""2020-02-30""#, Exact),
    ("time", r#""2020-02-29""#, Exact),
    ("time", r#""0000""#, Exact),
    ("time", "1.5", Exact),
    ("time", r#""2020-01-01 +1 day""#, Exact),
    ("time", r#""2020-01-02 -1 hour""#, Exact),
    ("time", r#""1999-12-31 23:59:59.999""#, Exact),
    ("time", r#""2020-01-02 03:04""#, Exact),
    ("time", r#""2020-01-02 03""#, Exact),
    // ival
    ("ival", r#"["2020", "2021"]"#, Exact),
    ("ival", r#"["2020", "?"]"#, Exact),
    ("ival", r#"["2020", "-1 day"]"#, Exact),
    ("ival", r#"["2020", "+-1 day"]"#, Exact),
    ("ival", r#"["2020", "+1 day"]"#, Exact),
    ("ival", r#"["2021", "2020"]"#, Exact),
    ("ival", r#"["?", 2020]"#, Exact),
    ("ival", r#"["?", "?"]"#, Exact),
    ("ival", r#"["2020"]"#, Exact),
    ("ival", r#""*""#, Exact),
    ("ival", r#"[2020, "*"]"#, Exact),
    ("ival", "null", Exact),
    ("ival", r#""2020""#, Exact),
    ("ival", "1577836800000", Exact),
    ("ival", r#""2020,2021""#, Exact),
    ("ival", r#"["2020", "2020"]"#, Exact),
    ("ival", r#""?""#, Exact),
    ("ival", r#""now""#, Near),
    // guid
    ("guid", r#""*""#, Shape),
    ("guid", r#""0123456789ABCDEF0123456789abcdef""#, Exact),
    ("guid", r#""01234567-89ab-cdef-0123-456789abcdef""#, Exact),
    ("guid", r#"["foo", "bar"]"#, Exact),
    ("guid", r#"["c1"]"#, Exact),
    ("guid", r#""0123456789abcdef0123456789abcde""#, Exact),
    ("guid", r#""newp""#, Exact),
    ("guid", r#""""#, Exact),
    ("guid", r#"{"a": 1}"#, Exact),
    ("guid", "10", Exact),
    ("guid", "[]", Exact),
    ("ou:org", r#""*""#, Shape),
    // hex and hashes
    ("hex", r#""0xFF""#, Exact),
    ("hex", r#""fff""#, Exact),
    ("hex", "255", Exact),
    ("hex", "-1", Exact),
    ("hex", r#""zz""#, Exact),
    ("hex", r#""""#, Exact),
    ("hex", r#""aa:bb cc""#, Exact),
    ("hash:md5", r#""D41D8CD98F00B204E9800998ECF8427E""#, Exact),
    ("hash:md5", r#""41d8cd98f00b204e9800998ecf8427e""#, Exact),
    ("hash:md5", r#""d41d8cd98f00b204e9800998ecf8427e00""#, Exact),
    (
        "hash:sha1",
        r#""DA39A3EE5E6B4B0D3255BFEF95601890AFD80709""#,
        Exact,
    ),
    (
        "hash:sha256",
        r#"" E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855 ""#,
        Exact,
    ),
    (
        "hash:sha512",
        r#""cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e""#,
        Exact,
    ),
    ("hash:sha256", r#""xyz""#, Exact),
    // loc
    ("loc", r#""us. va .  Reston""#, Exact),
    ("loc", r#""US VA""#, Exact),
    ("loc", r#""us..va""#, Exact),
    ("loc", r#""us.va.""#, Exact),
    ("loc", "5", Exact),
    // syn:tag
    ("syn:tag", r#""Foo.Bar""#, Exact),
    ("syn:tag", r#"" foo.bar ""#, Exact),
    ("syn:tag", r#"" foo . bar ""#, Exact),
    ("syn:tag", r##""#foo.bar""##, Exact),
    ("syn:tag", r#""foo bar""#, Exact),
    ("syn:tag", r#""foo-bar""#, Exact),
    ("syn:tag", r#""foo.b@r""#, Exact),
    ("syn:tag", r#""Ünicode.tag""#, Exact),
    ("syn:tag", r#""FOO.$bar""#, Exact),
    ("syn:tag", r#""foo..bar""#, Exact),
    ("syn:tag", r#"".foo""#, Exact),
    ("syn:tag", r#""foo.""#, Exact),
    ("syn:tag", r#""""#, Exact),
    ("syn:tag", r#""foo.*""#, Exact),
    ("syn:tag", r#""a.b.c""#, Exact),
    ("syn:tag", r#"["A", "b c"]"#, Exact),
    // taxonomy
    ("ou:industryname", r#""Finance""#, Exact),
    ("ou:org:type:taxonomy", r#""Government.Federal""#, Exact),
    ("ou:org:type:taxonomy", r#"".a.b.""#, Exact),
    ("ou:org:type:taxonomy", r#"["A b", "c"]"#, Exact),
    ("ou:org:type:taxonomy", r#""a..b""#, Exact),
    // ndef, comp, array
    ("ndef", r#"["inet:ipv4", "1.2.3.4"]"#, Exact),
    ("ndef", r#"["newp:form", "x"]"#, Exact),
    ("ndef", r#""inet:ipv4""#, Exact),
    ("ndef", r#"["inet:fqdn", "WWW.Vertex.Link"]"#, Exact),
    ("ndef", r#"["inet:ipv4"]"#, Exact),
    ("inet:dns:a", r#"["WWW.vertex.link", 16909060]"#, Exact),
    ("inet:dns:a", r#"["www.vertex.link", "1.2.3.4"]"#, Exact),
    ("inet:dns:a", r#"["a"]"#, Exact),
    ("inet:dns:aaaa", r#"["vertex.link", "::1"]"#, Exact),
    (
        "inet:dns:cname",
        r#"["a.vertex.link", "b.vertex.link"]"#,
        Exact,
    ),
    (
        "inet:dns:mx",
        r#"["vertex.link", "mail.vertex.link"]"#,
        Exact,
    ),
    (
        "inet:dns:ns",
        r#"["vertex.link", "ns1.vertex.link"]"#,
        Exact,
    ),
    ("inet:dns:txt", r#"["vertex.link", "v=spf1 -all"]"#, Exact),
    ("inet:web:acct", r#""vertex.link/visi""#, Exact),
    ("inet:web:acct", r#"["Vertex.Link", "Visi"]"#, Exact),
    ("inet:web:acct", r#""visi""#, Exact),
    (
        "edge:refs",
        r#"[["ou:org", "2b28581b36f55d56494ed9da9317023f"], ["inet:fqdn", "Vertex.Link"]]"#,
        Exact,
    ),
    (
        "edge:refs",
        r#"[["ou:org", "2b28581b36f55d56494ed9da9317023f"]]"#,
        Exact,
    ),
    (
        "file:ismime",
        r#"["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "text/plain"]"#,
        Exact,
    ),
    // inet:ipv4
    ("inet:ipv4", r#""1.2.3.4""#, Exact),
    ("inet:ipv4", "16909060", Exact),
    ("inet:ipv4", r#""16909060""#, Exact),
    ("inet:ipv4", r#""0x01020304""#, Exact),
    ("inet:ipv4", r#""01.02.03.04""#, Exact),
    ("inet:ipv4", r#""1.2.3""#, Exact),
    ("inet:ipv4", r#""010.1.1.1""#, Exact),
    ("inet:ipv4", r#""1""#, Exact),
    ("inet:ipv4", r#""127.0.0.1""#, Exact),
    ("inet:ipv4", r#""10.0.0.1""#, Exact),
    ("inet:ipv4", r#""224.0.0.1""#, Exact),
    ("inet:ipv4", r#""0.0.0.0""#, Exact),
    ("inet:ipv4", r#""255.255.255.255""#, Exact),
    ("inet:ipv4", r#""100.64.1.1""#, Exact),
    ("inet:ipv4", r#""169.254.1.1""#, Exact),
    ("inet:ipv4", r#""240.0.0.1""#, Exact),
    ("inet:ipv4", r#""192.0.0.9""#, Exact),
    ("inet:ipv4", r#""8.8.8.8""#, Exact),
    ("inet:ipv4", r#"" 1.2.3.4 ""#, Exact),
    ("inet:ipv4", r#""1.2.3.4 ""#, Exact),
    ("inet:ipv4", r#""1.2.3.4/24""#, Exact),
    ("inet:ipv4", r#""256.1.1.1""#, Exact),
    ("inet:ipv4", r#""300.1.1.1""#, Exact),
    ("inet:ipv4", r#""1.2.3.4:80""#, Exact),
    ("inet:ipv4", r#""::ffff:1.2.3.4""#, Exact),
    ("inet:ipv4", r#""1.2.3.4.""#, Exact),
    ("inet:ipv4", r#""1[.]2[.]3[.]4""#, Exact),
    ("inet:ipv4", r#""""#, Exact),
    ("inet:ipv4", "-1", Exact),
    ("inet:ipv4", "4294967296", Exact),
    ("inet:ipv4", "1.5", Exact),
    // inet:ipv6, cidrs
    (
        "inet:ipv6",
        r#""2001:0db8:0000:0000:0000:0000:0000:0001""#,
        Exact,
    ),
    ("inet:ipv6", r#""2001:DB8::1""#, Exact),
    ("inet:ipv6", r#""::ffff:1.2.3.4""#, Exact),
    ("inet:ipv6", r#""1.2.3.4""#, Exact),
    ("inet:ipv6", r#""::1""#, Exact),
    ("inet:ipv6", r#""::""#, Exact),
    ("inet:ipv6", r#""fe80::1%eth0""#, Exact),
    ("inet:ipv6", r#""ff02::1""#, Exact),
    ("inet:ipv6", r#""fc00::1""#, Exact),
    ("inet:ipv6", r#""2600::1""#, Exact),
    ("inet:ipv6", "1", Exact),
    ("inet:ipv6", r#""newp""#, Exact),
    ("inet:ipv6", r#""[::1]""#, Exact),
    ("inet:ipv6", r#""2001:db8::1/64""#, Exact),
    ("inet:ipv6", r#""1:2:3:4:5:6:7:8:9""#, Exact),
    ("inet:ipv6", r#""1::2::3""#, Exact),
    ("inet:ipv6", r#""::ffff:1.2.3""#, Exact),
    ("inet:ipv6", r#""12345::1""#, Exact),
    ("inet:cidr4", r#""1.2.3.4/24""#, Exact),
    ("inet:cidr4", r#""1.2.3.4/0""#, Exact),
    ("inet:cidr4", r#""1.2.3.4/32""#, Exact),
    ("inet:cidr4", r#""1.2.3.4""#, Exact),
    ("inet:cidr4", r#""1.2.3.4/33""#, Exact),
    ("inet:cidr4", r#""1.2.3.4/x""#, Exact),
    ("inet:cidr6", r#""2001:db8::/64""#, Exact),
    ("inet:cidr6", r#""2001:db8::1/64""#, Exact),
    ("inet:cidr6", r#""2001:db8::/129""#, Exact),
    ("inet:cidr6", r#""2001:db8::""#, Exact),
    // inet:fqdn
    ("inet:fqdn", r#""WWW.Vertex.Link""#, Exact),
    ("inet:fqdn", r#""www.vertex.link.""#, Exact),
    ("inet:fqdn", r#""www.vertex.link..""#, Exact),
    ("inet:fqdn", r#"".vertex.link""#, Exact),
    ("inet:fqdn", r#""ＶＥＲＴＥＸ.link""#, Exact),
    ("inet:fqdn", r#""bücher.example""#, Exact),
    ("inet:fqdn", r#""xn--bcher-kva.example""#, Exact),
    ("inet:fqdn", r#""under_score.com""#, Exact),
    ("inet:fqdn", r#""-foo.com""#, Exact),
    ("inet:fqdn", r#""foo-.com""#, Exact),
    ("inet:fqdn", r#""*.vertex.link""#, Exact),
    ("inet:fqdn", r#""space s.com""#, Exact),
    ("inet:fqdn", r#""""#, Exact),
    ("inet:fqdn", r#""1.2.3.4""#, Exact),
    ("inet:fqdn", r#""a..b""#, Exact),
    ("inet:fqdn", r#""com""#, Exact),
    ("inet:fqdn", r#""vertex[.]link""#, Exact),
    ("inet:fqdn", r#""vertex。link""#, Exact),
    ("inet:fqdn", r#""☃.com""#, Exact),
    ("inet:fqdn", r#""faß.de""#, Exact),
    ("inet:fqdn", "5", Exact),
    // inet:url
    ("inet:url", r#""http://www.Vertex.link/foo?x=1""#, Exact),
    ("inet:url", r#""HTTPS://1.2.3.4:8080/a/b""#, Exact),
    ("inet:url", r#""http://user:pass@vertex.link""#, Exact),
    ("inet:url", r#""http://[::1]:80/""#, Exact),
    ("inet:url", r#""http://[::1]/""#, Exact),
    ("inet:url", r#""http://☃.com/""#, Exact),
    ("inet:url", r#""http://vertex.link:99999""#, Exact),
    ("inet:url", r#""http://vertex.link:/""#, Exact),
    ("inet:url", r#""vertex.link/foo""#, Exact),
    ("inet:url", r#""hxxp://vertex.link/a""#, Exact),
    ("inet:url", r#""smb://host/share""#, Exact),
    ("inet:url", r#""ftp://ftp.vertex.link/pub""#, Exact),
    ("inet:url", r#""file:///etc/passwd""#, Exact),
    ("inet:url", r#""file:c:/windows/x.exe""#, Exact),
    (
        "inet:url",
        r#""http://user:p%40ss@www.test.com:8080/a/b?c=d#frag""#,
        Exact,
    ),
    ("inet:url", r#""http://::ffff:1.2.3.4/x""#, Exact),
    ("inet:url", r#""http://""#, Exact),
    // inet:email, inet:user, inet:server/client
    ("inet:email", r#""Visi@Vertex.Link""#, Exact),
    ("inet:email", r#""visi@vertex.link.""#, Exact),
    ("inet:email", r#"" visi@vertex.link ""#, Exact),
    ("inet:email", r#""VISI+x@vertex.link""#, Exact),
    ("inet:email", r#""visi""#, Exact),
    ("inet:email", r#""visi@bücher.example""#, Exact),
    ("inet:server", r#""tcp://1.2.3.4:80""#, Exact),
    ("inet:server", r#""1.2.3.4:80""#, Exact),
    ("inet:server", r#""udp://[::1]:53""#, Exact),
    ("inet:server", r#""tcp://8.8.8.8""#, Exact),
    ("inet:server", r#""ftp://1.2.3.4""#, Exact),
    ("inet:client", r#""tcp://1.2.3.4""#, Exact),
    ("inet:client", r#""host://vertex:80""#, Exact),
    ("inet:client", r#""gre://1.2.3.4:80""#, Exact),
    ("inet:asn", r#""AS10""#, Exact),
    // file:*
    (
        "file:bytes",
        r#""sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855""#,
        Exact,
    ),
    (
        "file:bytes",
        r#""e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855""#,
        Exact,
    ),
    (
        "file:bytes",
        r#""guid:0123456789abcdef0123456789abcdef""#,
        Exact,
    ),
    (
        "file:bytes",
        r#""guid:0123456789ABCDEF0123456789ABCDEF""#,
        Exact,
    ),
    ("file:bytes", r#""*""#, Shape),
    ("file:bytes", r#""hex:41""#, Exact),
    ("file:bytes", r#""base64:QUJD""#, Exact),
    ("file:bytes", r#""base64:QUJ""#, Exact),
    (
        "file:bytes",
        r#""sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85""#,
        Exact,
    ),
    ("file:bytes", r#""sha256:gg""#, Exact),
    (
        "file:bytes",
        r#""sha256:gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg""#,
        Exact,
    ),
    (
        "file:bytes",
        r#""SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855""#,
        Exact,
    ),
    ("file:bytes", r#""d41d8cd98f00b204e9800998ecf8427e""#, Exact),
    ("file:bytes", r#""newp""#, Exact),
    ("file:bytes", r#""guid:newp""#, Exact),
    ("file:bytes", r#"["a", "b"]"#, Exact),
    ("file:base", r#""Foo.EXE""#, Exact),
    ("file:base", r#""foo""#, Exact),
    ("file:base", r#""a/b""#, Exact),
    ("file:base", r#""a\\b""#, Exact),
    ("file:path", r#""C:\\Windows\\System32\\Foo.dll""#, Exact),
    ("file:path", r#""/etc/../etc/./passwd""#, Exact),
    ("file:path", r#""/""#, Exact),
    ("file:path", r#""""#, Exact),
    ("file:path", r#""..""#, Exact),
    ("file:path", r#""foo/bar.tar.gz""#, Exact),
    // ou, ps, geo, it, risk, tel, media
    ("ou:name", r#""Vertex""#, Exact),
    ("ps:person", r#""0123456789abcdef0123456789abcdef""#, Exact),
    ("ps:contact", r#"["c1"]"#, Exact),
    ("ps:contact:name", r#""Visi   Kensho""#, Exact),
    ("ps:name", r#""Smith, John""#, Exact),
    ("geo:place", r#""*""#, Shape),
    ("geo:name", r#""  New   York ""#, Exact),
    ("geo:latlong", r#""1.5,2.5""#, Exact),
    ("geo:latlong", "[1.5, 2.5]", Exact),
    ("geo:latlong", r#"[91, 0]"#, Exact),
    ("geo:latlong", r#""1""#, Exact),
    ("geo:latitude", r#""-90""#, Exact),
    ("geo:latitude", "90.5", Exact),
    ("it:dev:str", "5", Exact),
    ("it:sec:cve", r#""cve-2021-44228""#, Exact),
    ("risk:vuln", r#""*""#, Shape),
    ("tel:phone", r#""+1 (703) 555-1212""#, Exact),
    ("tel:phone", r#""44 20 7123 4567""#, Exact),
    ("tel:phone", "17035551212", Exact),
    ("tel:phone", r#""newp""#, Exact),
    ("tel:phone", "0", Exact),
    ("tel:phone", r#""0044123""#, Exact),
    ("tel:mob:imei", "49015420323751", Exact),
    ("tel:mob:imei", r#""490154203237518""#, Exact),
    ("tel:mob:imei", "490154203237519", Exact),
    ("tel:mob:imsi", "310150123456789", Exact),
    ("media:news", r#""*""#, Shape),
    ("inet:http:cookie", r#""Session=abc; Path=/""#, Exact),
    ("inet:ipv4range", r#""1.2.3.0/30""#, Exact),
    ("inet:ipv4range", r#""1.2.3.4-1.2.3.10""#, Exact),
    ("inet:ipv4range", r#""1.2.3.10-1.2.3.4""#, Exact),
    ("inet:ipv6range", r#""2001:db8::/126""#, Exact),
    ("duration", r#""1D 02:03:04.5""#, Exact),
    ("duration", r#""90""#, Exact),
    ("duration", r#""02:03""#, Exact),
    ("velocity", r#""10 km/h""#, Exact),
    ("velocity", r#""5 mph""#, Exact),
    ("velocity", r#""-5""#, Exact),
    // array
    ("ps:contact", r#""*""#, Shape),
    // more edges
    ("inet:url", r#""http://1.2.3.4""#, Exact),
    ("inet:url", r#""https://vertex.link?q=1""#, Exact),
    ("inet:url", r#""http://[2001:db8::1]:8080/a""#, Exact),
    ("inet:url", r#""http://user@vertex.link/""#, Exact),
    ("inet:url", r#""tcp://vertex.link""#, Exact),
    ("inet:url", r#""http://VERTEX.LINK:443/""#, Exact),
    ("inet:fqdn", r#""WWW.BÜCHER.example""#, Exact),
    ("inet:fqdn", r#""xn--zz.com""#, Exact),
    ("inet:fqdn", r#""a.b.c.d.e.f""#, Exact),
    ("inet:fqdn", r#""1.2.3""#, Exact),
    ("inet:fqdn", r#""01.2.3.4""#, Exact),
    ("time", r#""2020-01-02 03:04:05.6""#, Exact),
    ("time", r#""2020-01-02T03:04:05.999999""#, Exact),
    ("time", r#""1970-01-01""#, Exact),
    ("time", r#""1969-07-20 20:17""#, Exact),
    ("time", r#""9999-12-31 23:59:59.999""#, Exact),
    ("time", r#""2020-01-02 03:04:05 +00:00""#, Exact),
    ("time", r#""2020-06-01 12:00 pst""#, Exact),
    ("time", r#""2020-06-01 12:00:00.123-0700""#, Exact),
    (
        "ival",
        r#"["2020-01-01", "2020-01-01 00:00:00.001"]"#,
        Exact,
    ),
    ("ival", r#"[1577836800000, "+1 hour"]"#, Exact),
    ("inet:email", r#""a@b@c.com""#, Exact),
    ("inet:email", r#""visi@""#, Exact),
    ("inet:email", r#""@vertex.link""#, Exact),
    ("inet:ipv4", r#""0x7f.1""#, Exact),
    ("inet:ipv4", r#""4294967295""#, Exact),
    ("inet:ipv4", r#""4294967296""#, Exact),
    ("inet:ipv6", r#""::ffff:0:0""#, Exact),
    ("inet:ipv6", r#""2001::1""#, Exact),
    ("inet:ipv6", r#""64:ff9b::1.2.3.4""#, Exact),
    ("syn:tag", r##""#foo#""##, Exact),
    ("syn:tag", r#""a_b.c-d.e f""#, Exact),
    ("hash:sha1", r#""0x""#, Exact),
    ("file:path", r#""/A/B/../../../c""#, Exact),
    ("tel:phone", r#""+7 495 123-45-67""#, Exact),
];

/// A few props with declared options (arrays, locals), normed as their prop types.
const PROP_CASES: &[(&str, &str)] = &[
    ("ps:contact:names", r#"["b", "a", "b", "A"]"#),
    ("ps:contact:names", r#""a""#),
    ("ou:org:names", r#"["Vertex", "vtx"]"#),
    ("inet:ipv4:loc", r#""US. VA""#),
    ("inet:fqdn:zone", r#""Vertex.Link""#),
    ("file:bytes:size", r#""10""#),
];

fn to_value(j: &J) -> Value {
    Value::from_json(j)
}

/// Our result in the script's shape.
fn ours(model: &Model, name: &str, input: &J) -> J {
    let typ = match model.typ(name).or_else(|| model.prop(name).map(|p| &p.typ)) {
        Some(t) => t.clone(),
        None => return json!({"err": ["NoSuchType", format!("No type named {name}.")]}),
    };
    match typ.norm(model, &to_value(input)) {
        Ok(Norm { valu, subs, adds }) => {
            let repr = match typ.repr(model, &valu) {
                Ok(r) => r.to_json(),
                Err(e) => json!([format!("!{}", e.name), e.mesg()]),
            };
            json!({
                "norm": valu.to_json(),
                "subs": J::Object(subs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
                "adds": adds.iter().map(|(f, n)| json!([f, n.valu.to_json()])).collect::<Vec<_>>(),
                "repr": repr,
            })
        }
        Err(e) => json!({"err": [e.name, e.mesg()]}),
    }
}

fn near(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => (x - y).abs() < 120_000,
            _ => x == y,
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| near(p, q))
        }
        _ => a == b,
    }
}

/// Subs compared as maps (order-free).
fn subs_map(j: &J) -> BTreeMap<String, J> {
    j.get("subs")
        .and_then(J::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

#[test]
fn norms_match_python_synapse() {
    let Some(python) = common::syn2_python() else {
        return;
    };
    let model = Model::shared().expect("model loads");
    let mut cases: Vec<(String, J, Mode)> = CASES
        .iter()
        .map(|(t, v, m)| (t.to_string(), serde_json::from_str(v).expect(v), *m))
        .collect();
    // Prop types with declared options: both sides norm these with the prop's type.
    for (prop, v) in PROP_CASES {
        cases.push((prop.to_string(), serde_json::from_str(v).expect(v), Exact));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cases.json");
    let wire: Vec<J> = cases.iter().map(|(t, v, _)| json!([t, v])).collect();
    std::fs::write(&path, serde_json::to_string(&wire).expect("json")).expect("write cases");
    let out = common::run_py(
        &python,
        "norm_cases.py",
        &[path.to_str().expect("utf8 path")],
    );
    assert!(out.ok(), "norm_cases.py failed:\n{}", out.describe());
    let theirs = out.json();
    let theirs = theirs.as_array().expect("a list of results");
    assert_eq!(theirs.len(), cases.len());

    let mut failures = Vec::new();
    let mut mesg_diffs = Vec::new();
    for ((name, input, mode), py) in cases.iter().zip(theirs) {
        let rs = ours(&model, name, input);
        let case = format!("{name} {input}");
        assert!(
            py.get("norm").is_some() || py.get("err").is_some(),
            "{case}: python gave neither norm nor err: {py}"
        );
        match (py.get("err"), rs.get("err")) {
            (Some(pe), Some(re)) => {
                if pe[0] != re[0] {
                    failures.push(format!("{case}: python {pe} / syn {re}"));
                } else if pe[1] != re[1] {
                    mesg_diffs.push(format!("{case}: python {} / syn {}", pe[1], re[1]));
                }
            }
            (Some(pe), None) => failures.push(format!("{case}: python error {pe} / syn {rs}")),
            (None, Some(re)) => failures.push(format!("{case}: python {py} / syn error {re}")),
            (None, None) => {
                let same = match mode {
                    Exact => {
                        py["norm"] == rs["norm"]
                            && subs_map(py) == subs_map(&rs)
                            && py["repr"] == rs["repr"]
                            && py["adds"] == rs["adds"]
                    }
                    Near => near(&py["norm"], &rs["norm"]),
                    Shape => true,
                };
                if !same {
                    failures.push(format!("{case}:\n    python {py}\n    syn    {rs}"));
                }
            }
        }
    }
    eprintln!(
        "{} cases: {} differ, {} error messages differ",
        cases.len(),
        failures.len(),
        mesg_diffs.len()
    );
    for d in &mesg_diffs {
        eprintln!("message differs: {d}");
    }
    assert!(
        failures.is_empty(),
        "norms differ from Python Synapse:\n{}",
        failures.join("\n")
    );
}

/// Remove `doc` and `ex` keys everywhere, as the model data does.
fn strip_docs(j: &J) -> J {
    match j {
        J::Object(m) => J::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "doc" && k.as_str() != "ex")
                .map(|(k, v)| (k.clone(), strip_docs(v)))
                .collect(),
        ),
        J::Array(a) => J::Array(a.iter().map(strip_docs).collect()),
        other => other.clone(),
    }
}

/// Where two JSON values first differ, as a path.
fn first_diff(path: &str, a: &J, b: &J, out: &mut Vec<String>) {
    if out.len() >= 20 || a == b {
        return;
    }
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                first_diff(
                    &format!("{path}/{k}"),
                    x.get(k).unwrap_or(&J::Null),
                    y.get(k).unwrap_or(&J::Null),
                    out,
                );
            }
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                first_diff(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ => out.push(format!("{path}: python {a} / syn {b}")),
    }
}

#[test]
fn model_dict_matches_python_synapse() {
    let Some(python) = common::syn2_python() else {
        return;
    };
    let out = common::run_py(&python, "model_dict.py", &[]);
    assert!(out.ok(), "model_dict.py failed:\n{}", out.describe());
    let theirs = out.json();
    let ntypes = theirs["types"].as_object().map_or(0, |m| m.len());
    let nforms = theirs["forms"].as_object().map_or(0, |m| m.len());
    assert_eq!(
        (ntypes, nforms),
        (698, 595),
        "python's model dict is the full 2.256 model"
    );
    let ours = strip_docs(&Model::shared().expect("model loads").model_dict().to_json());
    let mut diffs = Vec::new();
    first_diff("", &theirs, &ours, &mut diffs);
    assert!(
        diffs.is_empty(),
        "getModelDict differs:\n{}",
        diffs.join("\n")
    );
}
