//! The `syn` command line: a thin layer that parses arguments and calls the library.

use std::process::ExitCode;
use syn::cell;
use syn::cli;

/// mimalloc instead of glibc's malloc: many small, short-lived allocations (decoded values,
/// edits, index keys) are most of what the storage paths allocate.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = cli::command().get_matches();
    let code = match matches.subcommand() {
        Some(("cell", m)) => cell::run(&cell::BARE_CELL, m),
        Some(("cortex", m)) => cell::run(&syn::cortex::service::CORTEX, m),
        Some(("axon", m)) => cell::run(&syn::axon::AXON, m),
        Some(("cryotank", m)) => cell::run(&syn::cryotank::CRYOTANK, m),
        Some(("call", m)) => cli::call(m),
        Some(("storm", m)) => cli::storm(m),
        Some(("easycert", m)) => cli::easycert(m),
        Some(("gen-docs", m)) => cli::gen_docs(m),
        Some(("backup", m)) => syn::backup::cli::run_backup(m),
        Some(("restore", m)) => syn::backup::cli::run_restore(m),
        Some(("runbook", m)) => cli::runbook(m),
        Some(("migrate-200", m)) => cli::migrate(m),
        Some(("sync-200", m)) => cli::sync200(m),
        Some(("pushfile", m)) => cli::pushfile(m),
        Some(("pullfile", m)) => cli::pullfile(m),
        _ => {
            // clap requires a subcommand, so this is unreachable in practice.
            eprintln!("syn: no command given (see syn --help)");
            2
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
