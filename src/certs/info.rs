//! What a certificate says: names, validity, usages, fingerprint.

use super::error::CertError;
use std::fmt;
use std::net::IpAddr;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// A subject alternative name, written as OpenSSL and Synapse's `--server-sans` do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum San {
    /// `DNS:name`.
    Dns(String),
    /// `IP:address`.
    Ip(IpAddr),
    /// `email:address`.
    Email(String),
    /// `URI:uri`.
    Uri(String),
}

impl San {
    /// The SAN for a host called `name`: an IP address if it is one, otherwise a DNS name.
    pub fn for_host(name: &str) -> San {
        match name.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(name.to_string()),
        }
    }

    /// Parse a comma-separated list: `DNS:a,IP:1.2.3.4,email:x@y,URI:u` or bare names and
    /// addresses (`a.example,10.0.0.1`).
    pub fn parse_list(text: &str) -> Result<Vec<San>, CertError> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let san = match item.split_once(':') {
                Some((kind, value)) if kind.eq_ignore_ascii_case("dns") => San::Dns(value.into()),
                Some((kind, value)) if kind.eq_ignore_ascii_case("ip") => {
                    San::Ip(value.parse().map_err(|_| {
                        CertError::Usage(format!("bad IP address in SANs: {value}"))
                    })?)
                }
                Some((kind, value)) if kind.eq_ignore_ascii_case("email") => {
                    San::Email(value.into())
                }
                Some((kind, value)) if kind.eq_ignore_ascii_case("uri") => San::Uri(value.into()),
                _ => match item.parse::<IpAddr>() {
                    Ok(ip) => San::Ip(ip),
                    Err(_) if item.contains(':') => {
                        return Err(CertError::Usage(format!(
                            "unsupported SAN `{item}` (use DNS:, IP:, email: or URI:)"
                        )));
                    }
                    Err(_) => San::Dns(item.into()),
                },
            };
            if let San::Dns(name) | San::Email(name) | San::Uri(name) = &san
                && (name.is_empty() || !name.is_ascii() || name.contains(char::is_whitespace))
            {
                return Err(CertError::Usage(format!("bad SAN `{item}`")));
            }
            if !out.contains(&san) {
                out.push(san);
            }
        }
        Ok(out)
    }

    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType, CertError> {
        let bad = |e: rcgen::Error| CertError::Usage(format!("bad SAN `{self}`: {e}"));
        Ok(match self {
            San::Dns(n) => rcgen::SanType::DnsName(n.as_str().try_into().map_err(bad)?),
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            San::Email(n) => rcgen::SanType::Rfc822Name(n.as_str().try_into().map_err(bad)?),
            San::Uri(n) => rcgen::SanType::URI(n.as_str().try_into().map_err(bad)?),
        })
    }

    pub(crate) fn from_general(name: &GeneralName<'_>) -> Option<San> {
        Some(match name {
            GeneralName::DNSName(n) => San::Dns(n.to_string()),
            GeneralName::RFC822Name(n) => San::Email(n.to_string()),
            GeneralName::URI(n) => San::Uri(n.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => San::Ip(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                16 => San::Ip(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(n) => write!(f, "DNS:{n}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Email(n) => write!(f, "email:{n}"),
            San::Uri(n) => write!(f, "URI:{n}"),
        }
    }
}

/// The facts about one certificate that operators and the TLS code ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject, e.g. `CN=cortex.vertex.link`.
    pub subject: String,
    /// Issuer, e.g. `CN=vertex`.
    pub issuer: String,
    /// The subject's first CN, if any.
    pub common_name: Option<String>,
    /// Subject alternative names.
    pub sans: Vec<San>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// basicConstraints says CA:TRUE.
    pub is_ca: bool,
    /// extendedKeyUsage includes serverAuth.
    pub server_auth: bool,
    /// extendedKeyUsage includes clientAuth.
    pub client_auth: bool,
    /// Issuer and subject are the same name.
    pub self_issued: bool,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256: String,
}

impl CertInfo {
    /// Parse a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, CertError> {
        let cert = parse(der)?;
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| CertError::Invalid(format!("bad subjectAltName: {e}")))?
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(San::from_general)
                    .collect()
            })
            .unwrap_or_default();
        let eku = cert
            .extended_key_usage()
            .map_err(|e| CertError::Invalid(format!("bad extendedKeyUsage: {e}")))?
            .map(|ext| ext.value);
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name: common_name(cert.subject()),
            sans,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: is_ca(&cert),
            server_auth: eku.is_some_and(|e| e.server_auth || e.any),
            client_auth: eku.is_some_and(|e| e.client_auth || e.any),
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
            serial: hex::encode(cert.raw_serial()),
            sha256: fingerprint_sha256(der),
        })
    }

    /// Whole days from `now` until `not_after`; negative once expired.
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_seconds().div_euclid(86_400)
    }
}

/// SHA-256 fingerprint of a DER certificate, lowercase hex without separators.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// Parse DER with x509-parser, as a one-line error.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| CertError::Invalid(format!("bad certificate: {e}")))
}

/// The first CN of a name.
pub(crate) fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// basicConstraints CA:TRUE.
pub(crate) fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_synapse_and_plain_san_lists() {
        let sans =
            San::parse_list("DNS:a.example, IP:10.1.2.3,b.example,::1,email:x@y,URI:tcp://z")
                .unwrap();
        let text: Vec<String> = sans.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "DNS:a.example",
                "IP:10.1.2.3",
                "DNS:b.example",
                "IP:::1",
                "email:x@y",
                "URI:tcp://z"
            ]
        );
        assert!(San::parse_list("IP:300.1.1.1").is_err());
        assert!(San::parse_list("dirName:foo").is_err());
        assert_eq!(San::parse_list("a,a,DNS:a").unwrap().len(), 1);
        assert_eq!(
            San::for_host("127.0.0.1"),
            San::Ip("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn reads_names_dates_and_fingerprint() {
        let mut params =
            rcgen::CertificateParams::new(vec!["h.example".into(), "10.0.0.9".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "h.example");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 31);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::from_der(cert.der()).unwrap();
        assert_eq!(info.subject, "CN=h.example");
        assert_eq!(info.issuer, "CN=h.example");
        assert_eq!(info.common_name.as_deref(), Some("h.example"));
        assert_eq!(
            info.sans,
            vec![
                San::Dns("h.example".into()),
                San::Ip("10.0.0.9".parse().unwrap())
            ]
        );
        assert!(info.server_auth && !info.client_auth && !info.is_ca && info.self_issued);
        assert_eq!(
            crate::clock::rfc3339(info.not_after),
            "2020-01-31T00:00:00Z"
        );
        assert_eq!(info.days_left(rcgen::date_time_ymd(2020, 1, 1)), 30);
        assert_eq!(info.days_left(rcgen::date_time_ymd(2020, 2, 1)), -1);
        assert_eq!(info.sha256.len(), 64);
        assert_eq!(info.sha256, fingerprint_sha256(cert.der()));
        assert!(CertInfo::from_der(&cert.der()[..100]).is_err());
    }
}
