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
        .subcommand(crate::axon::AXON.command())
        .subcommand(crate::cryotank::CRYOTANK.command())
        .subcommand(backup::cli::backup_command())
        .subcommand(backup::cli::restore_command())
        .subcommand(runbook_command())
        .subcommand(migrate_command())
        .subcommand(sync_command())
        .subcommand(pushfile_command())
        .subcommand(pullfile_command())
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
            clap::Command::new("storm")
                .about("Run a Storm query on a cortex and print the nodes as an analyst reads them")
                .long_about(
                    "Run QUERY on the cortex at URL (the cortex share: tcp://user:passwd@host:port/cortex, \
                     cell://DIR:cortex) and print each node (its form and value, then its props and \
                     tags), prints, warnings and errors as they arrive. --json prints every message \
                     as one JSON line instead. Exit status 1 when the query ends with an error.\n\n\
                     Example:\n  syn storm tcp://root:secret@127.0.0.1:27492/cortex 'inet:ipv4 +#bad'",
                )
                .arg(clap::Arg::new("url").value_name("URL").required(true))
                .arg(clap::Arg::new("query").value_name("QUERY").required(true))
                .arg(
                    clap::Arg::new("json")
                        .long("json")
                        .action(clap::ArgAction::SetTrue)
                        .help("print the raw messages, one JSON value a line"),
                )
                .arg(
                    clap::Arg::new("opts")
                        .long("opts")
                        .value_name("JSON")
                        .help("storm opts as a JSON object, e.g. '{\"vars\": {\"x\": 1}}'"),
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
                .arg(certdir_arg())
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

/// `syn runbook FILE.rhai [--dry-run] [--set KEY=VALUE ...]`.
fn runbook_command() -> clap::Command {
    use clap::{Arg, ArgAction, value_parser};
    clap::Command::new("runbook")
        .about("Run an operations runbook (a sandboxed rhai script): backups, restores, checks")
        .long_about(
            "Run FILE.rhai in a sandbox (limits on operations and time; no eval, no import, no \
             file or process access) whose only way out is the runbook API: service status, \
             start, stop, restart and wait_ready; backup, verify, restore, list and prune \
             backups; certificate expiry and renewal; log and fail. Services are driven through \
             systemctl (syn-<service>@<instance>.service) or, with --backend direct, spawned \
             as `syn <service> DIR` by the runbook itself. Every run appends an audit trail \
             (start, each step, the outcome) to DIR.<runbook>.audit.jsonl beside the service \
             directory and says the same on stderr.\n\n\
             Exit codes: 0 done; 1 the runbook failed (the last line says why); 2 bad \
             arguments, or the runbook does not compile.\n\n\
             Examples:\n  syn runbook /usr/share/syn/runbooks/nightly-live-backup.rhai --set instance=main\n  \
             syn runbook restore-from-cold-backup.rhai --dry-run --set instance=main",
        )
        .arg(
            Arg::new("file")
                .value_name("FILE.rhai")
                .required(true)
                .value_parser(value_parser!(std::path::PathBuf))
                .help("the runbook"),
        )
        .arg(
            Arg::new("dry-run")
                .long("dry-run")
                .action(ArgAction::SetTrue)
                .help("print each step that would change something instead of taking it"),
        )
        .arg(
            Arg::new("set")
                .long("set")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .value_parser(crate::runbook::parse_param)
                .help("a parameter (service, instance, dir, backups, ... as the runbook reads them)"),
        )
        .arg(
            Arg::new("backend")
                .long("backend")
                .value_name("BACKEND")
                .default_value("auto")
                .value_parser(crate::runbook::service::Backend::parse)
                .help("how services are run: systemd, direct (spawned by the runbook), or auto (systemd when booted with it)"),
        )
        .arg(
            Arg::new("audit")
                .long("audit")
                .value_name("FILE")
                .value_parser(value_parser!(std::path::PathBuf))
                .help("append the audit trail here [default: DIR.<runbook>.audit.jsonl]"),
        )
        .arg(
            Arg::new("time-limit")
                .long("time-limit")
                .value_name("TIME")
                .value_parser(backup::cli::parse_duration)
                .help("stop the run when it takes longer: 90s, 30m, 2h [default: 6h]"),
        )
}

/// `syn runbook`: returns the exit code.
pub fn runbook(m: &clap::ArgMatches) -> i32 {
    use crate::runbook::{DEFAULT_TIME_LIMIT, RunOptions, service::Backend};
    let interrupted = backup::cli::watch_signals();
    let opts = RunOptions {
        file: m
            .get_one::<std::path::PathBuf>("file")
            .cloned()
            .unwrap_or_default(),
        dry_run: m.get_flag("dry-run"),
        params: m
            .get_many::<(String, String)>("set")
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        backend: m
            .get_one::<Backend>("backend")
            .copied()
            .unwrap_or(Backend::Direct),
        audit: m.get_one::<std::path::PathBuf>("audit").cloned(),
        time_limit: m
            .get_one::<std::time::Duration>("time-limit")
            .copied()
            .unwrap_or(DEFAULT_TIME_LIMIT),
    };
    match crate::runbook::run(&opts, interrupted) {
        Ok(()) => 0,
        Err(e) => {
            if !e.said {
                eprintln!("syn runbook: {}", e.message);
            }
            e.exit
        }
    }
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
    with_proxy(m, "call", async move |proxy| {
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

/// `syn storm`: returns the exit code.
pub fn storm(m: &clap::ArgMatches) -> i32 {
    let url = m.get_one::<String>("url").cloned().unwrap_or_default();
    let query = m.get_one::<String>("query").cloned().unwrap_or_default();
    let raw = m.get_flag("json");
    let opts = match m.get_one::<String>("opts") {
        None => Value::Nil,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(j @ serde_json::Value::Object(_)) => Value::from_json(&j),
            _ => {
                eprintln!("syn storm: --opts must be a JSON object");
                return 2;
            }
        },
    };
    // People read values as Synapse shows them (1.2.3.4, not 16909060).
    let opts = match opts {
        Value::Nil if !raw => Value::map([("repr", Value::Bool(true))]),
        Value::Map(mut pairs) if !raw && !pairs.iter().any(|(k, _)| k.as_str() == Some("repr")) => {
            pairs.push(("repr".into(), Value::Bool(true)));
            Value::Map(pairs)
        }
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("syn storm: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let proxy = match Proxy::open(&url).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("syn storm: {e}");
                return 1;
            }
        };
        let mut msgs = match proxy.genr("storm", vec![query.into(), opts], vec![]).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("syn storm: {e}");
                return 1;
            }
        };
        let mut failed = false;
        while let Some(msg) = msgs.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("syn storm: {e}");
                    return 1;
                }
            };
            if raw {
                println!("{}", msg.to_json());
            }
            let Some((kind, info)) = msg.as_array().and_then(|a| match a {
                [Value::Str(k), info] => Some((k.as_str(), info)),
                _ => None,
            }) else {
                continue;
            };
            failed |= kind == "err";
            if !raw {
                print_storm_message(kind, info);
            }
        }
        i32::from(failed)
    })
}

/// One storm message for a person: nodes as `form=value` with indented props and tags.
fn print_storm_message(kind: &str, info: &Value) {
    let text = |v: &Value| match v {
        Value::Str(s) => s.clone(),
        other => other.to_json().to_string(),
    };
    match kind {
        "node" => {
            let Some([ndef, meta]) = info.as_array() else {
                return;
            };
            let (form, valu) = match ndef.as_array() {
                Some([f, v]) => (text(f), text(meta.get("repr").unwrap_or(v))),
                _ => return,
            };
            println!("{form}={valu}");
            let reprs = meta.get("reprs");
            for (k, v) in meta.get("props").and_then(Value::as_map).unwrap_or(&[]) {
                let shown = reprs
                    .and_then(|r| r.as_map()?.iter().find(|(rk, _)| rk == k).map(|(_, rv)| rv));
                println!("        :{} = {}", text(k), text(shown.unwrap_or(v)));
            }
            for (k, v) in meta.get("tags").and_then(Value::as_map).unwrap_or(&[]) {
                match v.as_array() {
                    Some([Value::Nil, Value::Nil]) | None => println!("        #{}", text(k)),
                    Some(_) => println!("        #{} = {}", text(k), v.to_json()),
                }
            }
        }
        "print" => println!("{}", info.get("mesg").map(text).unwrap_or_default()),
        "warn" => eprintln!(
            "WARNING: {}",
            info.get("mesg").map(text).unwrap_or_default()
        ),
        "err" => {
            let err = crate::error::SynErr::from_value(info);
            eprintln!("ERROR: {err}");
        }
        "fini" => {
            let count = info.get("count").and_then(Value::as_i64).unwrap_or(0);
            let took = info.get("took").and_then(Value::as_i64).unwrap_or(0);
            println!("complete. {count} nodes in {took} ms.");
        }
        _ => {}
    }
}

/// `syn migrate-200`.
fn migrate_command() -> clap::Command {
    use clap::{Arg, ArgAction, value_parser};
    let flag = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    clap::Command::new("migrate-200")
        .about("Bring a Synapse 0.1.x cortex (a backup of one) into a syn cortex directory")
        .long_about(
            "Read the Synapse 0.1.x cortex SRC (a backup: it is opened read-only, without lock \
             files) and write a syn cortex directory DEST that `syn cortex DEST` starts on: the \
             cell iden, every layer's nodes (values, props, tags with intervals, tag props, node \
             data), views and layers, the extended model, users, roles and rules with their \
             passwords, and the triggers, cron jobs and queues (stored, not run). Nodes that syn's \
             model refuses are skipped, recorded and counted; the run goes on. A checkpoint is \
             saved every 100,000 nodes and at the end in DEST/migration/; --from-last resumes \
             there. DEST/migration/lyroffs.yaml gives each layer's 0.1.x splice offset at the time \
             of the copy, for sync-200. Delete DEST/migration/ once the cut-over is done.\n\n\
             Exit status: 0 when the migration finished (skipped nodes are listed in the summary), \
             1 when it stopped (one line says why), 2 on bad arguments.\n\n\
             Example:\n  syn migrate-200 --src /backups/core01x --dest /var/lib/syn/cortex",
        )
        .arg(
            Arg::new("src")
                .long("src")
                .value_name("SRC")
                .required(true)
                .value_parser(value_parser!(std::path::PathBuf))
                .help("the Synapse 0.1.x cortex directory (a backup; never written)"),
        )
        .arg(
            Arg::new("dest")
                .long("dest")
                .value_name("DEST")
                .value_parser(value_parser!(std::path::PathBuf))
                .required_unless_present("form-counts")
                .help("the syn cortex directory to write (new or empty, or a run to resume)"),
        )
        .arg(flag("from-last", "resume from the last checkpoint in DEST/migration/"))
        .arg(flag(
            "safety-off",
            "skip normalizing primary values and checking buids (faster; trusts the source)",
        ))
        .arg(flag(
            "src-dedicated",
            "lock the source's memory (mlock); needs LimitMEMLOCK= or CAP_IPC_LOCK",
        ))
        .arg(flag(
            "form-counts",
            "print per-form node counts of source and DEST with differences; migrate nothing",
        ))
        .arg(flag(
            "dump-errors",
            "write every recorded node error to DEST/migration/migrerrors_<ms>.mpk; migrate nothing",
        ))
        .arg(flag(
            "map-partial",
            "accepted for Synapse's command line: partial nodes are always resolved",
        ))
        .arg(
            Arg::new("migr-ops")
                .long("migr-ops")
                .value_name("OP")
                .num_args(1..)
                .help(
                    "run only these steps: dirn dmodel cell hiveauth hivestor hivelyr nodes \
                     nodedata cron triggers splices queues",
                ),
        )
        .arg(
            Arg::new("nodelim")
                .long("nodelim")
                .value_name("N")
                .value_parser(value_parser!(u64))
                .help("stop each layer's node pass after N nodes (with a checkpoint)"),
        )
        .arg(
            Arg::new("progress-every")
                .long("progress-every")
                .value_name("N")
                .value_parser(value_parser!(u64))
                .default_value("100000")
                .help("without a terminal or systemd, print a progress line every N nodes"),
        )
}

/// Run `syn migrate-200`.
pub fn migrate(m: &clap::ArgMatches) -> i32 {
    use crate::migrate::{self, progress};
    let src: std::path::PathBuf = m
        .get_one::<std::path::PathBuf>("src")
        .cloned()
        .unwrap_or_default();
    let opts = migrate::Options {
        dest: m
            .get_one::<std::path::PathBuf>("dest")
            .cloned()
            .unwrap_or_default(),
        src,
        from_last: m.get_flag("from-last"),
        safety_off: m.get_flag("safety-off"),
        src_dedicated: m.get_flag("src-dedicated"),
        form_counts: m.get_flag("form-counts"),
        dump_errors: m.get_flag("dump-errors"),
        map_partial: m.get_flag("map-partial"),
        ops: m
            .get_many::<String>("migr-ops")
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
        nodelim: m.get_one::<u64>("nodelim").copied(),
        progress: progress::Mode::detect(
            m.get_one::<u64>("progress-every")
                .copied()
                .unwrap_or(100_000),
        ),
    };
    match migrate::run(&opts) {
        Ok(summary) => {
            if !summary.layers.is_empty() {
                for line in summary.lines() {
                    println!("{line}");
                }
            }
            0
        }
        Err(e) => {
            eprintln!("syn migrate-200: {}", e.mesg());
            1
        }
    }
}

/// `syn sync-200`.
fn sync_command() -> clap::Command {
    use clap::{Arg, ArgAction, value_parser};
    let seconds = |text: &str| -> Result<std::time::Duration, String> {
        let secs: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number of seconds"))?;
        std::time::Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{text:?} must be more than 0 seconds"))
    };
    clap::Command::new("sync-200")
        .about("Carry a running Synapse 0.1.x cortex's new splices into the migrated cortex until cut-over")
        .long_about(
            "After `syn migrate-200` copied a backup of a 0.1.x cortex, the 0.1.x cortex goes on \
             taking writes. sync-200 reads each layer's splices from SRC (0.1.x, at \
             SRC/cortex/layer/<iden>) starting where DEST_DIR/migration/lyroffs.yaml says the \
             copy ended, turns the splices of each node into one nodeedit, and stores it in the \
             same layer of DEST (a syn cortex, or Python Synapse 2.x, at \
             DEST/cortex/layer/<iden>) with storNodeEditsNoLift. It follows new splices (a pull \
             every --poll seconds once caught up) until SIGINT or SIGTERM, or with \
             --until-caught-up until every layer has caught up. Migration mode is on at DEST \
             while it runs (cron jobs and triggers do not fire) and is switched off at the end.\n\n\
             Progress is saved every second and at the end in the state file (JSON: each \
             layer's next splice offset, counts, and the errors); a new run goes on from there. \
             A splice that cannot be translated, or a nodeedit DEST refuses, is recorded there \
             and skipped; --err-lim errors stop the run. Lost connections are retried.\n\n\
             Every option can also come from its SYN_SYNC200_* variable (shown below), so that \
             passwords in URLs stay out of the process list.\n\n\
             Cut-over: stop writes to the 0.1.x cortex, run with --until-caught-up, then point \
             clients at DEST.\n\n\
             Exit status: 0 done with no errors, 3 done but some splices were skipped (see the \
             state file), 1 failed (one line says why), 2 bad arguments.\n\n\
             Example:\n  syn sync-200 --src tcp://root:secret@old-cortex:27492/ \\\n    \
             --dest tcp://root:secret@127.0.0.1:27492/ \\\n    \
             --offsfile /var/lib/syn/cortex/migration/lyroffs.yaml",
        )
        .arg(
            Arg::new("src")
                .env("SYN_SYNC200_SRC")
                .hide_env_values(true)
                .long("src")
                .value_name("URL")
                .required(true)
                .help("the 0.1.x cortex: tcp://user:passwd@host:port/ (ssl:// with --certdir)"),
        )
        .arg(
            Arg::new("dest")
                .env("SYN_SYNC200_DEST")
                .hide_env_values(true)
                .long("dest")
                .value_name("URL")
                .required(true)
                .help("the 2.x cortex: tcp://, ssl:// or unix:// URL of its telepath listener"),
        )
        .arg(
            Arg::new("offsfile")
                .env("SYN_SYNC200_OFFSFILE")
                .hide_env_values(true)
                .long("offsfile")
                .value_name("FILE")
                .required(true)
                .value_parser(value_parser!(std::path::PathBuf))
                .help("lyroffs.yaml from the migration (DEST_DIR/migration/lyroffs.yaml)"),
        )
        .arg(
            Arg::new("state")
                .env("SYN_SYNC200_STATE")
                .hide_env_values(true)
                .long("state")
                .value_name("FILE")
                .value_parser(value_parser!(std::path::PathBuf))
                .help("where progress is saved [default: sync200.json beside the offsfile]"),
        )
        .arg(
            Arg::new("from-file")
                .long("from-file")
                .action(ArgAction::SetTrue)
                .help("start every layer at the offsfile's offset, forgetting the saved state"),
        )
        .arg(
            Arg::new("until-caught-up")
                .long("until-caught-up")
                .action(ArgAction::SetTrue)
                .help("stop once every layer has caught up, instead of following"),
        )
        .arg(
            Arg::new("keep-migration-mode")
                .long("keep-migration-mode")
                .action(ArgAction::SetTrue)
                .help("leave migration mode on at DEST at the end"),
        )
        .arg(
            Arg::new("poll")
                .env("SYN_SYNC200_POLL")
                .hide_env_values(true)
                .long("poll")
                .value_name("SECONDS")
                .value_parser(seconds)
                .default_value("2")
                .help("the pause between pulls of a layer that has caught up"),
        )
        .arg(
            Arg::new("batch")
                .env("SYN_SYNC200_BATCH")
                .hide_env_values(true)
                .long("batch")
                .value_name("N")
                .value_parser(value_parser!(u64).range(1..=1_000_000))
                .default_value("10000")
                .help("splices read per pull"),
        )
        .arg(
            Arg::new("err-lim")
                .env("SYN_SYNC200_ERR_LIM")
                .hide_env_values(true)
                .long("err-lim")
                .value_name("N")
                .value_parser(value_parser!(i64).range(-1..))
                .allow_negative_numbers(true)
                .default_value("10")
                .help("stop after N errors; -1 never stops"),
        )
        .arg(
            Arg::new("status-every")
                .long("status-every")
                .value_name("SECONDS")
                .value_parser(seconds)
                .default_value("10")
                .help("how often a progress line is printed (and sent to systemd)"),
        )
        .arg(certdir_arg())
}

/// Run `syn sync-200`.
pub fn sync200(m: &clap::ArgMatches) -> i32 {
    use crate::migrate::sync;
    use std::path::PathBuf;
    use std::time::Duration;
    let text = |name: &str| m.get_one::<String>(name).cloned().unwrap_or_default();
    let certdir = m.get_one::<PathBuf>("certdir");
    let client = |url: &str| -> Result<ClientOptions, String> {
        let parsed = TeleUrl::parse(url).map_err(|e| e.mesg().to_owned())?;
        tls::client_options(&parsed, certdir.map(PathBuf::as_path)).map_err(|e| e.to_string())
    };
    let (src_client, dest_client) = match (client(&text("src")), client(&text("dest"))) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("syn sync-200: {e}");
            return 2;
        }
    };
    let offsfile = m
        .get_one::<PathBuf>("offsfile")
        .cloned()
        .unwrap_or_default();
    let state = m.get_one::<PathBuf>("state").cloned().unwrap_or_else(|| {
        offsfile
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(sync::STATE_FILE)
    });
    let seconds = |name: &str| m.get_one::<Duration>(name).copied().unwrap_or_default();
    let opts = sync::Options {
        src: text("src"),
        dest: text("dest"),
        offsfile,
        state,
        from_file: m.get_flag("from-file"),
        batch: m.get_one::<u64>("batch").copied().unwrap_or(10_000),
        poll: seconds("poll"),
        err_lim: m
            .get_one::<i64>("err-lim")
            .and_then(|n| u64::try_from(*n).ok()),
        until_caught_up: m.get_flag("until-caught-up"),
        keep_migration_mode: m.get_flag("keep-migration-mode"),
        status_every: seconds("status-every"),
        src_client,
        dest_client,
    };
    match sync::run(opts) {
        Ok(0) => 0,
        Ok(errors) => {
            eprintln!(
                "syn sync-200: {errors} splices were skipped this run (listed in the state file)"
            );
            3
        }
        Err(e) => {
            eprintln!("syn sync-200: {}", e.mesg());
            1
        }
    }
}

fn axon_url_arg() -> clap::Arg {
    clap::Arg::new("url")
        .value_name("URL")
        .required(true)
        .help("the axon: tcp://user:passwd@host:port/axon, ssl://..., unix:///path/sock:axon")
}

fn certdir_arg() -> clap::Arg {
    clap::Arg::new("certdir")
        .long("certdir")
        .value_name("DIR")
        .value_parser(clap::value_parser!(std::path::PathBuf))
        .help("certificates for ssl:// URLs [default: $SYN_CERTDIR, else ~/.syn/certs]")
}

/// `syn pushfile URL FILE...`.
fn pushfile_command() -> clap::Command {
    clap::Command::new("pushfile")
        .about("Upload files into an axon")
        .long_about(
            "Upload each FILE into the axon at URL (syn's or Python Synapse's) through an upload \
             object, in pieces of 8 MiB, and print `SHA256 SIZE FILE` for each. The SHA-256 the \
             axon saved is checked against the bytes read. A file that fails is reported and the \
             others are still sent.\n\n\
             Exit status: 0 when every file was stored, 1 otherwise, 2 on bad arguments.\n\n\
             Example:\n  syn pushfile tcp://root:secret@127.0.0.1:27494/axon report.pdf sample.bin",
        )
        .arg(axon_url_arg())
        .arg(
            clap::Arg::new("files")
                .value_name("FILE")
                .required(true)
                .num_args(1..)
                .value_parser(clap::value_parser!(std::path::PathBuf)),
        )
        .arg(certdir_arg())
}

/// `syn pullfile URL SHA256... [-o DIR]`.
fn pullfile_command() -> clap::Command {
    clap::Command::new("pullfile")
        .about("Download files from an axon by SHA-256")
        .long_about(
            "Download each file named by its SHA-256 (64 hex digits) from the axon at URL into \
             DIR/<sha256>, as Synapse's pullfile does. Each is written to DIR/<sha256>.partial, \
             checked against its SHA-256, synced and renamed, so a file is whole or absent.\n\n\
             Exit status: 0 when every file was written, 1 otherwise, 2 on bad arguments.\n\n\
             Example:\n  syn pullfile tcp://root:secret@127.0.0.1:27494/axon -o /tmp/out \
             9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        )
        .arg(axon_url_arg())
        .arg(
            clap::Arg::new("sha256")
                .value_name("SHA256")
                .required(true)
                .num_args(1..)
                .value_parser(|text: &str| -> Result<[u8; 32], String> {
                    hex::decode(text)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| format!("{text:?} is not a SHA-256 (64 hex digits)"))
                }),
        )
        .arg(
            clap::Arg::new("out")
                .short('o')
                .long("out")
                .value_name("DIR")
                .default_value(".")
                .value_parser(clap::value_parser!(std::path::PathBuf))
                .help("where the files go"),
        )
        .arg(certdir_arg())
}

/// Connect to the URL of `m` (its `url` and `certdir`, and `timeout` where the command has
/// one), then run `work` with the proxy; the exit status (2 for a bad URL, 1 when connecting
/// fails).
fn with_proxy(m: &clap::ArgMatches, name: &str, work: impl AsyncFnOnce(Proxy) -> i32) -> i32 {
    let url = m.get_one::<String>("url").cloned().unwrap_or_default();
    let certdir = m.get_one::<std::path::PathBuf>("certdir");
    let timeout = m
        .try_get_one::<u64>("timeout")
        .ok()
        .flatten()
        .map(|secs| std::time::Duration::from_secs(*secs));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("syn {name}: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let parsed = match TeleUrl::parse(&url) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("syn {name}: {}", e.mesg());
                return 2;
            }
        };
        let opts = match tls::client_options(&parsed, certdir.map(|p| p.as_path())) {
            Ok(opts) => ClientOptions {
                connect_timeout: timeout.unwrap_or(opts.connect_timeout),
                ..opts
            },
            Err(e) => {
                eprintln!("syn {name}: {e}");
                return 1;
            }
        };
        match Proxy::open_with(&parsed, opts).await {
            Ok(proxy) => work(proxy).await,
            Err(e) => {
                eprintln!("syn {name}: {e}");
                1
            }
        }
    })
}

/// A byte-count progress bar on a terminal, hidden otherwise.
fn bytes_bar(len: u64, label: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Run `syn pushfile`.
pub fn pushfile(m: &clap::ArgMatches) -> i32 {
    let files: Vec<std::path::PathBuf> = m
        .get_many::<std::path::PathBuf>("files")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    with_proxy(m, "pushfile", async move |axon| {
        let mut status = 0;
        for path in files {
            let len = std::fs::metadata(&path).map_or(0, |md| md.len());
            let bar = bytes_bar(len, &path.display().to_string());
            let pushed =
                crate::axon::client::push(&axon, &path, &mut |n| bar.set_position(n)).await;
            bar.finish_and_clear();
            match pushed {
                Ok((size, sha256)) => println!("{} {size} {}", hex::encode(sha256), path.display()),
                Err(e) => {
                    eprintln!("syn pushfile: {}", e.mesg());
                    status = 1;
                }
            }
        }
        status
    })
}

/// Run `syn pullfile`.
pub fn pullfile(m: &clap::ArgMatches) -> i32 {
    let hashes: Vec<[u8; 32]> = m
        .get_many::<[u8; 32]>("sha256")
        .map(|v| v.copied().collect())
        .unwrap_or_default();
    let out = m
        .get_one::<std::path::PathBuf>("out")
        .cloned()
        .unwrap_or_default();
    with_proxy(m, "pullfile", async move |axon| {
        let mut status = 0;
        for sha256 in hashes {
            let name = hex::encode(sha256);
            let size = axon
                .call("size", vec![Value::Bin(sha256.to_vec())])
                .await
                .ok()
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let bar = bytes_bar(size.max(0) as u64, &name[..16]);
            let dest = out.join(&name);
            let pulled =
                crate::axon::client::pull(&axon, &sha256, &dest, &mut |n| bar.set_position(n))
                    .await;
            bar.finish_and_clear();
            match pulled {
                Ok(size) => println!("{name} {size} {}", dest.display()),
                Err(e) => {
                    eprintln!("syn pullfile: {name}: {}", e.mesg());
                    status = 1;
                }
            }
        }
        status
    })
}
