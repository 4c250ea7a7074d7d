//! The certs module's error: one line each, naming the file at fault.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `syn easycert` finished what it was asked.
pub const EXIT_OK: u8 = 0;
/// Bad input or a failed read or write (a damaged PEM, a mismatched key, a missing file).
pub const EXIT_FAILED: u8 = 1;
/// The command line asks for something that cannot be done (a bad combination).
pub const EXIT_USAGE: u8 = 2;
/// A file that would be written already exists; nothing was written.
pub const EXIT_EXISTS: u8 = 3;
/// `--check-expiry` found certificates that expire within the window.
pub const EXIT_EXPIRING: u8 = 4;

/// Everything that can go wrong with a certdir. `Display` is a single line.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The command line asks for something contradictory or incomplete.
    #[error("{0}")]
    Usage(String),
    /// A file that would be written already exists (Synapse's `DupFileName`).
    #[error("file exists: {}", .0.display())]
    FileExists(PathBuf),
    /// None of the candidate certdirs exists.
    #[error("certdir not found: {}", join_paths(.0))]
    NoCertDir(Vec<PathBuf>),
    /// A file that must be there is not.
    #[error("{what} not found: {}", path.display())]
    NotFound {
        /// What was looked for ("csr", "CA key", ...).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file exists but its content is unusable.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// In-memory data (not yet tied to a file) is unusable.
    #[error("{0}")]
    Invalid(String),
    /// A private key is not the one its certificate was issued for.
    #[error("{}: key does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A certificate does not chain to a trusted CA, or is not valid for the use asked.
    #[error("{}: not trusted: {reason}", path.display())]
    Untrusted {
        /// The certificate file.
        path: PathBuf,
        /// Why verification failed.
        reason: String,
    },
    /// A read or write failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `--check-expiry` found certificates expiring inside the window.
    #[error("{count} certificate(s) expire within {days} days")]
    Expiring {
        /// How many.
        count: usize,
        /// The window asked for.
        days: u32,
    },
}

impl CertError {
    /// The process exit status `syn easycert` uses for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CertError::Usage(_) => EXIT_USAGE,
            CertError::FileExists(_) => EXIT_EXISTS,
            CertError::Expiring { .. } => EXIT_EXPIRING,
            _ => EXIT_FAILED,
        }
    }

    /// Tie an in-memory error to the file it came from.
    pub(crate) fn in_file(self, path: &Path) -> CertError {
        match self {
            CertError::Invalid(reason) => CertError::BadFile {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> CertError {
        CertError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A content error in `path`.
    pub(crate) fn bad(path: &Path, reason: impl Into<String>) -> CertError {
        CertError::BadFile {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    let mut out = String::new();
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", p.display());
    }
    out
}
