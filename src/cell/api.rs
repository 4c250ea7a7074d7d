//! The Cell API every service inherits (Synapse's `CellApi`): identity, info, health, logs, and
//! user, role and rule management, with Synapse's method names and argument order.

use super::Cell;
use super::auth::{Rule, Subject, User, pack_role};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::{Args, HasMethods, Methods};
use std::path::Path;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// The longest a backup may hold a service's writes ([`backup_hold`]).
pub const BACKUP_HOLD_MAX: Duration = Duration::from_secs(60);

/// How long `backupHold` holds writes when the caller gives no timeout.
pub const BACKUP_HOLD_DEFAULT: Duration = Duration::from_secs(10);

/// One client session with a cell: the cell and the user it acts as.
pub struct CellApi {
    /// The cell.
    pub cell: Arc<Cell>,
    user: RwLock<String>,
}

impl CellApi {
    /// A session acting as user `iden`.
    pub fn new(cell: Arc<Cell>, user_iden: String) -> Self {
        CellApi {
            cell,
            user: RwLock::new(user_iden),
        }
    }

    /// The session user's iden.
    pub fn user_iden(&self) -> String {
        self.user.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The session user as it is now (an error if it was deleted meanwhile).
    pub fn user(&self) -> SynResult<User> {
        self.cell.auth.req_user(&self.user_iden())
    }

    /// Fail with `AuthDeny` unless the session user is an admin.
    pub fn req_admin(&self) -> SynResult<()> {
        let user = self.user()?;
        if user.admin && !user.locked {
            return Ok(());
        }
        Err(
            SynErr::auth_deny(format!("User ({}) must be an admin", user.name))
                .with("user", user.iden)
                .with("username", user.name),
        )
    }

    /// Fail with `AuthDeny` unless the session user has `perm` (on gate `gate` if given).
    pub fn req_allowed(&self, perm: &[&str], gate: Option<&str>) -> SynResult<()> {
        let user = self.user()?;
        let perm: Vec<String> = perm.iter().map(|p| (*p).to_owned()).collect();
        if self.cell.auth.allowed(&user.iden, &perm, None, gate) == Some(true) {
            return Ok(());
        }
        Err(SynErr::auth_deny(format!(
            "User ({}) must have permission {}",
            user.name,
            perm.join(".")
        ))
        .with("user", user.iden)
        .with("username", user.name)
        .with(
            "perm",
            Value::Array(perm.into_iter().map(Value::from).collect()),
        ))
    }

    fn pack_user(&self, user: &User, packroles: bool) -> Value {
        self.cell.auth.pack_user(user, packroles)
    }
}

/// Parse a permission path argument (a list of strings).
fn perm_arg(args: &mut Args, idx: usize) -> SynResult<Vec<String>> {
    args.req::<Vec<String>>(idx, "perm")
}

fn rule_arg(args: &mut Args, idx: usize) -> SynResult<Rule> {
    let v: Value = args.req(idx, "rule")?;
    Rule::from_value(&v)
}

fn rules_arg(args: &mut Args, idx: usize) -> SynResult<Vec<Rule>> {
    let v: Vec<Value> = args.req(idx, "rules")?;
    v.iter().map(Rule::from_value).collect()
}

fn insert_at<T>(list: &mut Vec<T>, item: T, indx: Option<i64>) {
    match indx {
        Some(i) if i >= 0 && (i as usize) < list.len() => list.insert(i as usize, item),
        _ => list.push(item),
    }
}

/// Add, replace or remove rules of a user or role; shared by the six rule methods.
async fn edit_rules(
    api: Arc<CellApi>,
    mut args: Args,
    subject: Subject,
    op: RuleOp,
) -> SynResult<Value> {
    api.req_admin()?;
    let iden: String = args.req(0, "iden")?;
    type RuleEdit = Box<dyn FnOnce(&mut Vec<Rule>) -> SynResult<()> + Send>;
    let (edit, gate): (RuleEdit, Option<String>) = match op {
        RuleOp::Add => {
            let rule = rule_arg(&mut args, 1)?;
            let indx: Option<i64> = args.opt(2, "indx")?;
            let gate = args.opt(3, "gateiden")?;
            let edit: RuleEdit = Box::new(move |rules| {
                insert_at(rules, rule, indx);
                Ok(())
            });
            (edit, gate)
        }
        RuleOp::Set => {
            let new = rules_arg(&mut args, 1)?;
            let gate = args.opt(2, "gateiden")?;
            let edit: RuleEdit = Box::new(move |rules| {
                *rules = new;
                Ok(())
            });
            (edit, gate)
        }
        RuleOp::Del => {
            let rule = rule_arg(&mut args, 1)?;
            let gate = args.opt(2, "gateiden")?;
            let edit: RuleEdit = Box::new(move |rules| {
                let before = rules.len();
                rules.retain(|r| *r != rule);
                if rules.len() == before {
                    return Err(SynErr::new("NoSuchRule", "the rule is not present"));
                }
                Ok(())
            });
            (edit, gate)
        }
    };
    args.done()?;
    let auth = api.cell.auth.clone();
    blocking(move || auth.update_rules(subject, &iden, gate.as_deref(), edit)).await?;
    Ok(Value::Nil)
}

/// Take the process's write gate for a backup (`backupHold`): wait for writes in progress,
/// hold new ones back, yield one item describing the snapshot point, and keep holding until the
/// caller closes the generator or `timeout` passes (then the generator ends with
/// `BackupHoldTimeout`).
///
/// The item is a map: `iden`, `type`, `version` (syn's), `time` (epoch ms), `waited` (ms spent
/// waiting for writes in progress), `envs` (environments open for writing) and `logs`
/// (`[path, durable length]` of each registered append-only log), paths relative to the
/// service directory. The hold is kept by a thread of its own, so it ends on time even when
/// the service's reactor is busy.
pub async fn backup_hold(
    cell: Arc<Cell>,
    timeout: Duration,
) -> SynResult<mpsc::Receiver<SynResult<Value>>> {
    let asked = Instant::now();
    let hold = tokio::task::spawn_blocking(move || crate::storage::write_gate().hold(timeout))
        .await
        .map_err(|e| SynErr::new("SynErr", format!("backup hold task failed: {e}")))?
        .map_err(|e| SynErr::new("BackupHoldFailed", e.to_string()))?;
    let waited = asked.elapsed();
    let held = Instant::now();
    let point = hold.snapshot_point();
    let rel = |path: &Path| -> Value {
        let shown = path.strip_prefix(cell.path()).unwrap_or(path);
        Value::from(shown.to_string_lossy().into_owned())
    };
    let item = Value::map([
        ("iden", Value::from(cell.iden())),
        ("type", Value::from(cell.kind)),
        ("version", Value::from(super::SYN_VERSION)),
        ("time", Value::from(crate::clock::now_ms())),
        ("waited", Value::from(waited.as_millis() as i64)),
        (
            "envs",
            Value::Array(point.envs.iter().map(|p| rel(p)).collect()),
        ),
        (
            "logs",
            Value::Array(
                point
                    .logs
                    .iter()
                    .map(|l| Value::Array(vec![rel(&l.path), Value::from(l.length as i64)]))
                    .collect(),
            ),
        ),
    ]);
    info!(
        waited_ms = waited.as_millis() as u64,
        "backup hold: writes paused"
    );
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (expired_tx, expired_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("backup-hold".into())
        .spawn(move || {
            let expired = matches!(
                release_rx.recv_timeout(timeout),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            drop(hold);
            let held_ms = held.elapsed().as_millis() as u64;
            if expired {
                warn!(held_ms, "backup hold: timed out; writes resume");
                let _ = expired_tx.send(());
            } else {
                info!(held_ms, "backup hold: released; writes resume");
            }
        })
        .map_err(|e| SynErr::new("SynErr", format!("cannot start the hold thread: {e}")))?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        if tx.send(Ok(item)).await.is_ok() {
            tokio::select! {
                // The client closes the generator once its snapshot has begun.
                _ = tx.closed() => {}
                Ok(()) = expired_rx => {
                    let err = SynErr::new(
                        "BackupHoldTimeout",
                        format!("the backup hold ended after {}ms", timeout.as_millis()),
                    );
                    let _ = tx.send(Err(err)).await;
                }
            }
        }
        drop(release_tx);
    });
    Ok(rx)
}

/// A hold timeout argument: seconds as an int or a float, up to [`BACKUP_HOLD_MAX`].
fn hold_timeout(value: Option<Value>) -> SynResult<Duration> {
    let secs = match value {
        None | Some(Value::Nil) => return Ok(BACKUP_HOLD_DEFAULT),
        Some(Value::Int(i)) => i as f64,
        Some(Value::Float(f)) => f,
        Some(_) => return Err(SynErr::bad_arg("timeout must be a number of seconds")),
    };
    if !(secs > 0.0 && secs <= BACKUP_HOLD_MAX.as_secs_f64()) {
        return Err(SynErr::bad_arg(format!(
            "timeout must be more than 0 and at most {} seconds",
            BACKUP_HOLD_MAX.as_secs()
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Clone, Copy)]
enum RuleOp {
    Add,
    Set,
    Del,
}

/// Change one field of a user (admin only); shared by the set-flag methods.
async fn set_user_field(
    api: Arc<CellApi>,
    mut args: Args,
    name: &'static str,
    f: fn(&mut User, Value) -> SynResult<()>,
) -> SynResult<Value> {
    api.req_admin()?;
    let iden: String = args.req(0, "iden")?;
    let value: Value = args.req(1, name)?;
    let gate: Option<String> = args.opt(2, "gateiden")?;
    args.done()?;
    let auth = api.cell.auth.clone();
    blocking(move || {
        auth.update_user(&iden, |u| match &gate {
            Some(g) if name == "admin" => {
                let admin = value
                    .as_bool()
                    .ok_or_else(|| SynErr::bad_arg("admin must be a bool"))?;
                u.gates.entry(g.clone()).or_default().admin = admin;
                Ok(())
            }
            Some(_) => Err(SynErr::bad_arg(format!("{name} cannot be set on a gate"))),
            None => f(u, value),
        })
    })
    .await?;
    Ok(Value::Nil)
}

fn bool_field(v: &Value, name: &str) -> SynResult<bool> {
    v.as_bool()
        .ok_or_else(|| SynErr::bad_arg(format!("{name} must be a bool")))
}

static CELL_METHODS: LazyLock<Methods<CellApi>> =
    LazyLock::new(|| {
        Methods::<CellApi>::new("synapse.lib.cell.CellApi")
        .call("getCellIden", |api, args| async move {
            args.done()?;
            Ok(Value::from(api.cell.iden()))
        })
        .call("getCellType", |api, args| async move {
            args.done()?;
            Ok(Value::from(api.cell.kind))
        })
        .call("getCellRunId", |api, args| async move {
            args.done()?;
            Ok(Value::from(api.cell.run_id.as_str()))
        })
        .call("getCellInfo", |api, args| async move {
            args.done()?;
            Ok(api.cell.info())
        })
        .call("getHealthCheck", |api, args| async move {
            args.done()?;
            Ok(Value::map([
                ("iden", Value::from(api.cell.iden())),
                ("status", "nominal".into()),
                ("components", Value::Array(vec![])),
            ]))
        })
        .call("getSystemInfo", |api, args| async move {
            args.done()?;
            api.req_admin()?;
            Ok(api.cell.system_info())
        })
        .call("getCellUser", |api, args| async move {
            args.done()?;
            let user = api.user()?;
            Ok(api.pack_user(&user, false))
        })
        .call("setCellUser", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            args.done()?;
            api.req_admin()?;
            let user = api.cell.auth.user(&iden).ok_or_else(|| {
                SynErr::new("NoSuchUser", format!("Unable to set cell user iden to {iden}"))
                    .with("user", iden.as_str())
            })?;
            if user.locked {
                return Err(SynErr::auth_deny(format!("User ({}) is locked.", user.name)));
            }
            *api.user.write().unwrap_or_else(|e| e.into_inner()) = user.iden;
            Ok(Value::Bool(true))
        })
        .call("allowed", |api, mut args| async move {
            let perm = perm_arg(&mut args, 0)?;
            let default: Option<bool> = args.opt(1, "default")?;
            args.done()?;
            Ok(api.cell.auth.allowed(&api.user_iden(), &perm, default, None).into())
        })
        .call("isUserAllowed", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            let perm = perm_arg(&mut args, 1)?;
            let gate: Option<String> = args.opt(2, "gateiden")?;
            let default: Option<bool> = args.opt(3, "default")?;
            args.done()?;
            api.req_admin()?;
            api.cell.auth.req_user(&iden)?;
            let allowed = api
                .cell
                .auth
                .allowed(&iden, &perm, default.or(Some(false)), gate.as_deref());
            Ok(Value::from(allowed))
        })
        .call("isRoleAllowed", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            let perm = perm_arg(&mut args, 1)?;
            let gate: Option<String> = args.opt(2, "gateiden")?;
            args.done()?;
            api.req_admin()?;
            api.cell.auth.req_role(&iden)?;
            let allowed = api.cell.auth.role_allowed(&iden, &perm, gate.as_deref());
            Ok(Value::Bool(allowed == Some(true)))
        })
        .call("addUser", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let passwd: Option<String> = args.opt(1, "passwd")?;
            let email: Option<String> = args.opt(2, "email")?;
            let iden: Option<String> = args.opt(3, "iden")?;
            args.done()?;
            api.req_admin()?;
            let auth = api.cell.auth.clone();
            let user = blocking(move || {
                auth.add_user(&name, passwd.as_deref(), email.as_deref(), iden.as_deref())
            })
            .await?;
            Ok(api.pack_user(&user, false))
        })
        .call("delUser", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            args.done()?;
            api.req_admin()?;
            let auth = api.cell.auth.clone();
            blocking(move || auth.del_user(&iden)).await?;
            Ok(Value::Nil)
        })
        .call("addRole", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let iden: Option<String> = args.opt(1, "iden")?;
            args.done()?;
            api.req_admin()?;
            let auth = api.cell.auth.clone();
            let role = blocking(move || auth.add_role(&name, iden.as_deref())).await?;
            Ok(pack_role(&role))
        })
        .call("delRole", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            args.done()?;
            api.req_admin()?;
            let auth = api.cell.auth.clone();
            blocking(move || auth.del_role(&iden)).await?;
            Ok(Value::Nil)
        })
        .call("getUserDef", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            let packroles = args.opt::<bool>(1, "packroles")?.unwrap_or(true);
            args.done()?;
            Ok(api
                .cell
                .auth
                .user(&iden)
                .map(|u| api.pack_user(&u, packroles))
                .into())
        })
        .call("getUserDefByName", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            args.done()?;
            Ok(api
                .cell
                .auth
                .user_by_name(&name)
                .map(|u| api.pack_user(&u, true))
                .into())
        })
        .call("getUserDefs", |api, args| async move {
            args.done()?;
            let users = api.cell.auth.users();
            Ok(Value::Array(
                users.iter().map(|u| api.pack_user(u, false)).collect(),
            ))
        })
        .call("getRoleDef", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            args.done()?;
            Ok(api.cell.auth.role(&iden).map(|r| pack_role(&r)).into())
        })
        .call("getRoleDefByName", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            args.done()?;
            Ok(api.cell.auth.role_by_name(&name).map(|r| pack_role(&r)).into())
        })
        .call("getRoleDefs", |api, args| async move {
            args.done()?;
            Ok(Value::Array(
                api.cell.auth.roles().iter().map(pack_role).collect(),
            ))
        })
        .call("setUserPasswd", |api, mut args| async move {
            let iden: String = args.req(0, "iden")?;
            let passwd: Option<String> = args.opt(1, "passwd")?;
            args.done()?;
            if iden != api.user_iden() {
                api.req_allowed(&["auth", "user", "set", "passwd"], None)?;
            }
            let auth = api.cell.auth.clone();
            blocking(move || auth.set_passwd(&iden, passwd.as_deref())).await?;
            Ok(Value::Nil)
        })
        .call("tryUserPasswd", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let passwd: String = args.req(1, "passwd")?;
            args.done()?;
            api.req_admin()?;
            let Some(user) = api.cell.auth.user_by_name(&name) else {
                return Ok(Value::Nil);
            };
            let auth = api.cell.auth.clone();
            let iden = user.iden.clone();
            let ok = blocking(move || Ok(auth.try_passwd(&iden, &passwd))).await?;
            Ok(if ok { api.pack_user(&user, false) } else { Value::Nil })
        })
        .call("setUserLocked", |api, args| {
            set_user_field(api, args, "locked", |u, v| {
                u.locked = bool_field(&v, "locked")?;
                Ok(())
            })
        })
        .call("setUserArchived", |api, args| {
            set_user_field(api, args, "archived", |u, v| {
                u.archived = bool_field(&v, "archived")?;
                if u.archived {
                    u.locked = true;
                }
                Ok(())
            })
        })
        .call("setUserAdmin", |api, args| {
            set_user_field(api, args, "admin", |u, v| {
                u.admin = bool_field(&v, "admin")?;
                Ok(())
            })
        })
        .call("setUserEmail", |api, args| {
            set_user_field(api, args, "email", |u, v| {
                u.email = match v {
                    Value::Str(s) => Some(s),
                    Value::Nil => None,
                    _ => return Err(SynErr::bad_arg("email must be a str")),
                };
                Ok(())
            })
        })
        .call("addUserRule", |api, args| edit_rules(api, args, Subject::User, RuleOp::Add))
        .call("setUserRules", |api, args| edit_rules(api, args, Subject::User, RuleOp::Set))
        .call("delUserRule", |api, args| edit_rules(api, args, Subject::User, RuleOp::Del))
        .call("addRoleRule", |api, args| edit_rules(api, args, Subject::Role, RuleOp::Add))
        .call("setRoleRules", |api, args| edit_rules(api, args, Subject::Role, RuleOp::Set))
        .call("delRoleRule", |api, args| edit_rules(api, args, Subject::Role, RuleOp::Del))
        .call("addUserRole", |api, mut args| async move {
            let user: String = args.req(0, "useriden")?;
            let role: String = args.req(1, "roleiden")?;
            let indx: Option<i64> = args.opt(2, "indx")?;
            args.done()?;
            api.req_admin()?;
            api.cell.auth.req_role(&role)?;
            let auth = api.cell.auth.clone();
            blocking(move || {
                auth.update_user(&user, |u| {
                    if !u.roles.contains(&role) {
                        insert_at(&mut u.roles, role, indx);
                    }
                    Ok(())
                })
            })
            .await?;
            Ok(Value::Nil)
        })
        .call("setUserRoles", |api, mut args| async move {
            let user: String = args.req(0, "useriden")?;
            let roles: Vec<String> = args.req(1, "roleidens")?;
            args.done()?;
            api.req_admin()?;
            for role in &roles {
                api.cell.auth.req_role(role)?;
            }
            let auth = api.cell.auth.clone();
            blocking(move || {
                auth.update_user(&user, |u| {
                    u.roles = roles;
                    Ok(())
                })
            })
            .await?;
            Ok(Value::Nil)
        })
        .call("delUserRole", |api, mut args| async move {
            let user: String = args.req(0, "useriden")?;
            let role: String = args.req(1, "roleiden")?;
            args.done()?;
            api.req_admin()?;
            let auth = api.cell.auth.clone();
            blocking(move || {
                auth.update_user(&user, |u| {
                    u.roles.retain(|r| *r != role);
                    Ok(())
                })
            })
            .await?;
            Ok(Value::Nil)
        })
        .call("logs", |api, mut args| async move {
            let last = args.opt::<i64>(0, "last")?.unwrap_or(100).max(0) as usize;
            args.done()?;
            api.req_admin()?;
            Ok(Value::Array(super::log::logs().recent(last)))
        })
        .genr("backupHold", |api, mut args| async move {
            let timeout = hold_timeout(args.take(0, "timeout"))?;
            args.done()?;
            api.req_admin()?;
            backup_hold(api.cell.clone(), timeout).await
        })
        .genr("syncAuth", |api, args| async move {
            args.done()?;
            api.req_admin()?;
            sync_auth(api.cell.auth.clone())
        })
        .genr("watch", |api, mut args| async move {
            let last = args.opt::<i64>(0, "last")?.unwrap_or(100).max(0) as usize;
            args.done()?;
            api.req_admin()?;
            let logs = super::log::logs();
            let mut feed = logs.subscribe();
            let recent = logs.recent(last);
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                for record in recent {
                    if tx.send(Ok(record)).await.is_err() {
                        return;
                    }
                }
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        record = feed.recv() => match record {
                            Ok(r) => if tx.send(Ok(r)).await.is_err() { return },
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(_) => return,
                        },
                    }
                }
            });
            Ok(rx)
        })
        .build()
    });

/// `syncAuth()` (syn's own, admin only): every user and role as stored, password shadows
/// included, now and again after each change, as msgpack bytes of `(users, roles)` (what
/// [`crate::cell::auth::decode_auth`] reads). Mirrors follow it.
fn sync_auth(auth: Arc<super::auth::Auth>) -> SynResult<crate::telepath::Genr> {
    let mut changes = auth.changes();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            changes.mark_unchanged();
            let item = super::auth::encode_auth(&auth.snapshot());
            if tx.send(item).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tx.closed() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    });
    Ok(rx)
}

impl HasMethods for CellApi {
    fn methods() -> &'static Methods<Self> {
        &CELL_METHODS
    }
}

/// Run an API call's blocking work (LMDB, storm) off the reactor, on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> SynResult<T> + Send + 'static,
) -> SynResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SynErr::new("SynErr", format!("a blocking task failed: {e}")))?
}

/// A follower's `timeout` argument at position `at`: seconds (int or float), or None for no
/// limit; negative, NaN and huge values are a BadArg.
pub fn timeout_arg(args: &mut Args, at: usize) -> SynResult<Option<Duration>> {
    match args.opt::<Value>(at, "timeout")? {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => {
            let secs = match v {
                Value::Float(f) => Some(f),
                other => other.as_i64().map(|i| i as f64),
            };
            let limit = secs.and_then(|s| Duration::try_from_secs_f64(s).ok());
            limit
                .map(Some)
                .ok_or_else(|| SynErr::bad_arg("timeout must be a number of seconds, not negative"))
        }
    }
}

/// Wait, for a generator that follows new records, until `more` holds for the watched value,
/// at most `timeout`; false when the time ran out, the watch ended or the reader went away.
pub async fn wait_for_more<V, T>(
    watched: &mut tokio::sync::watch::Receiver<V>,
    more: impl FnMut(&V) -> bool,
    timeout: Option<Duration>,
    reader: &mpsc::Sender<T>,
) -> bool {
    let arrived = async {
        let arrived = watched.wait_for(more);
        match timeout {
            Some(limit) => matches!(tokio::time::timeout(limit, arrived).await, Ok(Ok(_))),
            None => arrived.await.is_ok(),
        }
    };
    tokio::select! {
        arrived = arrived => arrived,
        () = reader.closed() => false,
    }
}

/// The Cell API's method table, for services whose APIs inherit it.
pub fn cell_methods() -> &'static Methods<CellApi> {
    &CELL_METHODS
}
