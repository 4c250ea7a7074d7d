//! The `syn` command line.
//!
//! Only `easycert` for now; the full CLI lives elsewhere and will absorb this.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "syn", about = "The Synapse service tier")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make and manage TLS certificates (Synapse's easycert)
    Easycert(syn::certs::EasycertArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Easycert(args) => match syn::certs::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("syn easycert: {e}");
                ExitCode::from(e.exit_code())
            }
        },
    }
}
