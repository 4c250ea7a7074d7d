//! `syn easycert`: Synapse's easycert command line, plus listing, expiry checks,
//! signing external CSRs, validity and key-type choices.

use super::error::CertError;
use super::info::San;
use super::issue::{ImportInto, IssueOptions};
use super::keys::KeyType;
use super::{CertDir, CertKind, Listing, default_certdir, expand_home};
use crate::clock::rfc3339;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Command-line arguments of `syn easycert` (Synapse v2.0.0's flags and ours).
#[derive(clap::Args, Clone, Debug)]
pub struct EasycertArgs {
    /// Directory for certs and keys [default: $SYN_CERTDIR, else ~/.syn/certs]
    #[arg(long, value_name = "DIR")]
    pub certdir: Option<PathBuf>,
    /// Import FILE (a PEM certificate, key or CSR, or a .p12) into cas/, hosts/ or users/,
    /// chosen from its content (or by --ca/--server). Synapse's form also works:
    /// --importfile cas|hosts|users FILE
    #[arg(long, value_name = "FILE")]
    pub importfile: Option<String>,
    /// Make a CA (with --signas: an intermediate CA signed by that CA)
    #[arg(long)]
    pub ca: bool,
    /// Bundle NAME's certificate, key and issuing CA as NAME.p12 (users/, or hosts/ with --server)
    #[arg(long)]
    pub p12: bool,
    /// Make a host certificate for a TLS server
    #[arg(long)]
    pub server: bool,
    /// Extra names for --server: DNS:a.example,IP:10.0.0.1 or a.example,10.0.0.1
    #[arg(long, value_name = "SANS")]
    pub server_sans: Option<String>,
    /// Make a key and a CSR for an external CA instead of a certificate
    #[arg(long)]
    pub csr: bool,
    /// Sign the CSR in FILE (or in NAME, as Synapse) with --signas; user cert, or host with --server
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub sign_csr: Option<Option<PathBuf>>,
    /// Sign with CA NAME from cas/ (default: self-signed, as Synapse)
    #[arg(long, value_name = "CA")]
    pub signas: Option<String>,
    /// Validity in days [default: 3650 for a CA, 730 for a host or user]
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
    /// Kind of key to make
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    pub key_type: KeyType,
    /// List every certificate: subject, issuer, names, not-after, days left
    #[arg(long)]
    pub list: bool,
    /// With --list: print JSON
    #[arg(long, requires = "list")]
    pub json: bool,
    /// Exit non-zero naming each certificate that expires within DAYS days
    #[arg(long, value_name = "DAYS")]
    pub check_expiry: Option<u32>,
    /// Start validity on DATE (YYYY-MM-DD, UTC) instead of now; for tests that need
    /// certificates that are already expired
    #[arg(long, value_name = "DATE", hide = true, value_parser = parse_date)]
    pub valid_from: Option<OffsetDateTime>,
    /// Certificate name: a CA, a host's FQDN or user@network (a file with Synapse's
    /// --sign-csr and --importfile forms)
    pub name: Option<String>,
}

fn parse_date(text: &str) -> Result<OffsetDateTime, String> {
    let bad = || format!("expected YYYY-MM-DD, got `{text}`");
    let mut parts = text.splitn(3, '-');
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<i32>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next()?, next()?, next()?);
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(d).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, day).map_err(|_| bad())?;
    Ok(date.midnight().assume_utc())
}

/// Run `syn easycert`, printing Synapse's lines (`key saved: PATH`, ...) to stdout and
/// warnings to stderr. Map an error to an exit status with [`CertError::exit_code`].
pub fn run(args: &EasycertArgs) -> Result<(), CertError> {
    let dir_path = args
        .certdir
        .as_deref()
        .map(expand_home)
        .unwrap_or_else(default_certdir);
    let now = OffsetDateTime::now_utc();

    if args.list || args.check_expiry.is_some() {
        if args.list && args.check_expiry.is_some() {
            return Err(CertError::Usage(
                "use --list and --check-expiry separately".into(),
            ));
        }
        if args.name.is_some() {
            return Err(CertError::Usage(
                "--list and --check-expiry take no NAME".into(),
            ));
        }
        let dir = CertDir::open(&dir_path)?;
        let listing = dir.list()?;
        return match args.check_expiry {
            Some(days) => check_expiry(&dir, &listing, days, now),
            None if args.json => print_json(&dir, &listing, now),
            None => print_list(&dir, &listing, now),
        };
    }

    let sans = match &args.server_sans {
        Some(text) => San::parse_list(text)?,
        None => Vec::new(),
    };
    let opts = IssueOptions {
        signas: args.signas.clone(),
        days: args.days,
        valid_from: args.valid_from,
        key_type: args.key_type,
        sans,
    };
    let name = || {
        args.name
            .as_deref()
            .ok_or_else(|| CertError::Usage("a NAME is required (see --help)".into()))
    };
    let host_or_user = if args.server {
        CertKind::Host
    } else {
        CertKind::User
    };

    // Synapse's order: importfile, p12, sign-csr, csr, ca, server, user.
    let dir = CertDir::create(&dir_path)?;
    let outcome = if let Some(value) = &args.importfile {
        let synapse_dir = match value.as_str() {
            "cas" => Some(CertKind::Ca),
            "hosts" => Some(CertKind::Host),
            "users" => Some(CertKind::User),
            _ => None,
        };
        match (synapse_dir, &args.name) {
            (Some(kind), Some(file)) => dir.import(&PathBuf::from(file), ImportInto::Dir(kind))?,
            (_, None) => dir.import(
                &PathBuf::from(value),
                ImportInto::Auto {
                    ca: args.ca,
                    server: args.server,
                },
            )?,
            (None, Some(_)) => {
                return Err(CertError::Usage(
                    "--importfile FILE takes no NAME (Synapse's form is --importfile cas|hosts|users FILE)".into(),
                ));
            }
        }
    } else if args.p12 {
        dir.make_p12(host_or_user, name()?)?
    } else if let Some(file) = &args.sign_csr {
        if args.ca {
            return Err(CertError::Usage("--sign-csr never makes a CA".into()));
        }
        let path = match (file, &args.name) {
            (Some(f), None) => f.clone(),
            (None, Some(n)) => PathBuf::from(n),
            (Some(_), Some(_)) => {
                return Err(CertError::Usage("--sign-csr FILE takes no NAME".into()));
            }
            (None, None) => return Err(CertError::Usage("--sign-csr needs the CSR file".into())),
        };
        dir.sign_csr(&path, host_or_user, &opts)?
    } else if args.csr {
        if args.ca {
            return Err(CertError::Usage(
                "a CSR for a CA certificate is not supported".into(),
            ));
        }
        dir.make_csr(host_or_user, name()?, &opts)?
    } else if args.ca {
        dir.issue(CertKind::Ca, name()?, &opts)?
    } else {
        dir.issue(host_or_user, name()?, &opts)?
    };
    for warning in &outcome.warnings {
        eprintln!("syn easycert: warning: {warning}");
    }
    let mut text = String::new();
    for saved in &outcome.saved {
        let _ = writeln!(text, "{saved}");
    }
    emit(&text)
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<(), CertError> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CertError::io(Path::new("<stdout>"), e))
        }
        _ => Ok(()),
    }
}

fn rel(dir: &CertDir, path: &std::path::Path) -> String {
    path.strip_prefix(dir.path())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn days_text(days: i64) -> String {
    match days {
        d if d < 0 => format!("EXPIRED {} days ago", -d),
        d => format!("{d} days left"),
    }
}

fn report_errors(listing: &Listing) -> Result<(), CertError> {
    for e in &listing.errors {
        eprintln!("syn easycert: {e}");
    }
    match listing.errors.len() {
        0 => Ok(()),
        n => Err(CertError::Invalid(format!(
            "{n} certificate file(s) could not be read"
        ))),
    }
}

fn print_list(dir: &CertDir, listing: &Listing, now: OffsetDateTime) -> Result<(), CertError> {
    let mut out = String::new();
    if listing.certs.is_empty() && listing.errors.is_empty() {
        let _ = writeln!(out, "no certificates in {}", dir.path().display());
    }
    for c in &listing.certs {
        let i = &c.info;
        let names: Vec<String> = i.sans.iter().map(ToString::to_string).collect();
        let self_signed = if i.self_issued { " (self-signed)" } else { "" };
        let _ = writeln!(out, "{} ({})", rel(dir, &c.path), c.kind.label());
        let _ = writeln!(out, "  subject:   {}", i.subject);
        let _ = writeln!(out, "  issuer:    {}{self_signed}", i.issuer);
        let _ = writeln!(
            out,
            "  names:     {}",
            if names.is_empty() {
                "-".into()
            } else {
                names.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "  not after: {} ({})",
            rfc3339(i.not_after),
            days_text(i.days_left(now))
        );
        let _ = writeln!(out, "  sha256:    {}", i.sha256);
    }
    emit(&out)?;
    report_errors(listing)
}

fn print_json(dir: &CertDir, listing: &Listing, now: OffsetDateTime) -> Result<(), CertError> {
    let certs: Vec<serde_json::Value> = listing
        .certs
        .iter()
        .map(|c| {
            let i = &c.info;
            serde_json::json!({
                "kind": c.kind.dir(),
                "name": c.name,
                "path": c.path,
                "subject": i.subject,
                "issuer": i.issuer,
                "common_name": i.common_name,
                "sans": i.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "not_before": rfc3339(i.not_before),
                "not_after": rfc3339(i.not_after),
                "days_left": i.days_left(now),
                "is_ca": i.is_ca,
                "self_signed": i.self_issued,
                "serial": i.serial,
                "sha256": i.sha256,
            })
        })
        .collect();
    let errors: Vec<String> = listing.errors.iter().map(ToString::to_string).collect();
    let doc = serde_json::json!({ "certdir": dir.path(), "certs": certs, "errors": errors });
    let text = serde_json::to_string_pretty(&doc).expect("JSON values always serialize");
    emit(&format!("{text}\n"))?;
    report_errors(listing)
}

fn check_expiry(
    dir: &CertDir,
    listing: &Listing,
    days: u32,
    now: OffsetDateTime,
) -> Result<(), CertError> {
    let limit = now + time::Duration::days(i64::from(days));
    let mut count = 0;
    let mut out = String::new();
    for c in listing.certs.iter().filter(|c| c.info.not_after <= limit) {
        count += 1;
        let left = c.info.days_left(now);
        let when = if c.info.not_after <= now {
            format!("expired {} days ago", -left)
        } else {
            format!("expires in {left} days")
        };
        let _ = writeln!(
            out,
            "{when}: {} ({}, not after {})",
            rel(dir, &c.path),
            c.info.subject,
            rfc3339(c.info.not_after)
        );
    }
    emit(&out)?;
    report_errors(listing)?;
    if count > 0 {
        return Err(CertError::Expiring { count, days });
    }
    emit(&format!(
        "ok: none of the {} certificates in {} expires within {days} days\n",
        listing.certs.len(),
        dir.path().display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            rfc3339(parse_date("2020-02-29").unwrap()),
            "2020-02-29T00:00:00Z"
        );
        assert!(parse_date("2021-02-29").is_err());
        assert!(parse_date("2021-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }
}
