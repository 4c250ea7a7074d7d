//! The command tree of the `syn` binary and the small client commands that live nowhere else.
//!
//! Services come from their [`crate::cell::ServiceKind`]; everything else is a call into the
//! library. Kept here (not in `main.rs`) so the man page and completions can be generated from
//! the same tree.

use crate::backup;
use crate::cell;
use crate::certs;
use crate::msgpack::Value;
use crate::telepath::{ClientOptions, Proxy, TeleUrl, tls};
use clap::{Args as _, FromArgMatches as _};

/// The whole `syn` command tree.
pub fn command() -> clap::Command {
    clap::Command::new("syn")
        .version(cell::SYN_VERSION)
        .about("The Synapse service tier (cortex, axon, cryotank) as a systemd-native appliance")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(cell::BARE_CELL.command())
        .subcommand(crate::cortex::service::CORTEX.command())
        .subcommand(backup::cli::backup_command())
        .subcommand(backup::cli::restore_command())
        .subcommand(
            certs::EasycertArgs::augment_args(clap::Command::new("easycert"))
                .about("Make and manage TLS certificates in a certdir (Synapse's easycert)"),
        )
        .subcommand(
            clap::Command::new("gen-docs")
                .hide(true)
                .about("Write the man pages (syn.1, syn-COMMAND.1) and bash completion (syn.bash) into DIR")
                .arg(
                    clap::Arg::new("dir")
                        .value_name("DIR")
                        .required(true)
                        .value_parser(clap::value_parser!(std::path::PathBuf)),
                ),
        )
        .subcommand(
            clap::Command::new("call")
                .about("Call a telepath method and print the result as JSON")
                .long_about(
                    "Call METHOD on the object at URL with ARGs given as JSON (a bare word that is \
                     not JSON is taken as a string). The result is printed as JSON; a generator \
                     method prints one JSON value per line as items arrive. Bytes print as hex.\n\n\
                     Examples:\n  syn call cell:///var/lib/syn/cell/core getCellInfo\n  \
                     syn call tcp://root:secret@127.0.0.1:27492/ addUser '\"visi\"'\n  \
                     syn call --certdir /etc/syn/certs 'ssl://visi@cortex.vertex.link/?certname=visi@vertex.link' getCellUser",
                )
                .arg(
                    clap::Arg::new("url")
                        .value_name("URL")
                        .required(true)
                        .help("telepath URL: tcp://user:passwd@host:port/share, ssl://user:passwd@host:port/share?hostname=NAME&certname=NAME&certhash=SHA256, unix:///path:share, cell://DIR"),
                )
                .arg(clap::Arg::new("method").value_name("METHOD").required(true))
                .arg(
                    clap::Arg::new("args")
                        .value_name("ARG")
                        .num_args(0..)
                        .help("positional arguments as JSON"),
                )
                .arg(
                    clap::Arg::new("kwarg")
                        .long("kwarg")
                        .short('k')
                        .value_name("NAME=JSON")
                        .action(clap::ArgAction::Append)
                        .help("a keyword argument"),
                )
                .arg(
                    clap::Arg::new("certdir")
                        .long("certdir")
                        .value_name("DIR")
                        .value_parser(clap::value_parser!(std::path::PathBuf))
                        .help("certificates for ssl:// URLs [default: $SYN_CERTDIR, else ~/.syn/certs]"),
                )
                .arg(
                    clap::Arg::new("timeout")
                        .long("timeout")
                        .value_name("SECONDS")
                        .value_parser(clap::value_parser!(u64))
                        .default_value("30")
                        .help("limit on connecting and logging in"),
                ),
        )
}

/// Parse a command-line argument as JSON, or take it as a plain string.
pub fn json_arg(text: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(j) => Value::from_json(&j),
        Err(_) => Value::from(text),
    }
}

/// `syn call`: returns the exit code.
pub fn call(m: &clap::ArgMatches) -> i32 {
    let url = m.get_one::<String>("url").cloned().unwrap_or_default();
    let meth = m.get_one::<String>("method").cloned().unwrap_or_default();
    let args: Vec<Value> = m
        .get_many::<String>("args")
        .into_iter()
        .flatten()
        .map(|a| json_arg(a))
        .collect();
    let mut kwargs = Vec::new();
    for kw in m.get_many::<String>("kwarg").into_iter().flatten() {
        let Some((k, v)) = kw.split_once('=') else {
            eprintln!("syn call: --kwarg needs NAME=JSON, got {kw:?}");
            return 2;
        };
        kwargs.push((k.to_owned(), json_arg(v)));
    }
    let timeout = std::time::Duration::from_secs(*m.get_one::<u64>("timeout").unwrap_or(&30));
    let certdir = m.get_one::<std::path::PathBuf>("certdir").cloned();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("syn call: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let parsed = match TeleUrl::parse(&url) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("syn call: {}", e.mesg());
                return 2;
            }
        };
        let opts = match tls::client_options(&parsed, certdir.as_deref()) {
            Ok(opts) => ClientOptions {
                connect_timeout: timeout,
                ..opts
            },
            Err(e) => {
                eprintln!("syn call: {e}");
                return 1;
            }
        };
        let proxy = match Proxy::open_with(&parsed, opts).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("syn call: {e}");
                return 1;
            }
        };
        let kwargs: Vec<(&str, Value)> = kwargs
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if proxy.is_genr(&meth) {
            let mut genr = match proxy.genr(&meth, args, kwargs).await {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("syn call: {e}");
                    return 1;
                }
            };
            while let Some(item) = genr.next().await {
                match item {
                    Ok(v) => println!("{}", v.to_json()),
                    Err(e) => {
                        eprintln!("syn call: {e}");
                        return 1;
                    }
                }
            }
            0
        } else {
            match proxy.call_kw(&meth, args, kwargs).await {
                Ok(v) => {
                    println!("{}", v.to_json());
                    0
                }
                Err(e) => {
                    eprintln!("syn call: {e}");
                    1
                }
            }
        }
    })
}

/// `syn easycert`: returns the exit code.
pub fn easycert(m: &clap::ArgMatches) -> i32 {
    let args = match certs::EasycertArgs::from_arg_matches(m) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("syn easycert: {e}");
            return 2;
        }
    };
    match certs::run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("syn easycert: {e}");
            i32::from(e.exit_code())
        }
    }
}

/// `syn gen-docs DIR`: the man pages (`syn.1`, `syn-<command>.1`) and bash completion, generated from the command tree so
/// they never drift from it. Returns the exit code.
pub fn gen_docs(m: &clap::ArgMatches) -> i32 {
    let Some(dir) = m.get_one::<std::path::PathBuf>("dir") else {
        return 2;
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let top = command();
        let mut pages = vec![("syn".to_owned(), top.clone())];
        for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("syn-{}", sub.get_name());
            pages.push((name.clone(), sub.clone().name(name)));
        }
        for (name, cmd) in pages {
            let mut man = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut man)?;
            std::fs::write(dir.join(format!("{name}.1")), man)?;
        }
        let mut bash = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut command(), "syn", &mut bash);
        std::fs::write(dir.join("syn.bash"), bash)
    };
    match write() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("syn gen-docs: {}: {e}", dir.display());
            1
        }
    }
}
