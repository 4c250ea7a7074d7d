//! Users, roles, rules and passwords (Synapse's auth model).
//!
//! The whole model is small, so it lives in memory for fast permission checks and is written
//! through to `slabs/cell.lmdb` (databases `auth:users` and `auth:roles`) before any change is
//! acknowledged. Permission checks follow Synapse: a rule matches when its path is a prefix of
//! the permission, the first match wins, and the order is locked, admin, gate user rules, user
//! rules, gate role rules, role rules, default.
//!
//! Passwords are stored as salted PBKDF2-HMAC-SHA256 with [`PBKDF2_ITERATIONS`] rounds.
//! Synapse 0.1.x/2.0 shadows (`md5(msgpack((salt, passwd)))`) still verify and are replaced
//! with PBKDF2 on the first good login.

use crate::error::{SynErr, SynResult};
use crate::guid;
use crate::msgpack::Value;
use crate::storage::{Db, Slab, Txn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};

/// PBKDF2 rounds for new password shadows.
pub const PBKDF2_ITERATIONS: u32 = 310_000;

/// The role every user holds.
pub const ALL_ROLE: &str = "all";
/// The user that always exists and is always admin.
pub const ROOT_USER: &str = "root";

/// An allow or deny rule on a permission path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Allow (true) or deny (false).
    pub allow: bool,
    /// The permission path prefix, e.g. `["node", "add"]`.
    pub path: Vec<String>,
}

impl Rule {
    /// The wire form `(allow, (path...))`.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Bool(self.allow),
            Value::Array(self.path.iter().map(|p| p.as_str().into()).collect()),
        ])
    }

    /// Read `(allow, (path...))`.
    pub fn from_value(v: &Value) -> SynResult<Rule> {
        let bad = || SynErr::bad_arg(format!("a rule must be (allow, (path, ...)), not {v}"));
        match v.as_array() {
            Some([Value::Bool(allow), Value::Array(path)]) => Ok(Rule {
                allow: *allow,
                path: path
                    .iter()
                    .map(|p| p.as_str().map(str::to_owned).ok_or_else(bad))
                    .collect::<SynResult<_>>()?,
            }),
            _ => Err(bad()),
        }
    }

    fn matches(&self, perm: &[String]) -> bool {
        perm.starts_with(&self.path)
    }
}

/// Rules and admin status that apply only to one object (an auth gate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateEntry {
    /// Admin of this object.
    pub admin: bool,
    /// Rules for this object.
    pub rules: Vec<Rule>,
}

/// A stored password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shadow {
    /// PBKDF2-HMAC-SHA256.
    Pbkdf2 {
        /// Random salt.
        #[serde(with = "serde_bytes")]
        salt: Vec<u8>,
        /// Rounds.
        iterations: u32,
        /// Derived key.
        #[serde(with = "serde_bytes")]
        hashed: Vec<u8>,
    },
    /// Synapse 0.1.x / 2.0: `md5(msgpack((salt, passwd))).hexdigest()` with a guid salt.
    Legacy {
        /// The salt (a guid string).
        salt: String,
        /// The hex digest.
        hashed: String,
    },
}

impl Shadow {
    /// A new PBKDF2 shadow of `passwd`.
    pub fn new(passwd: &str) -> Shadow {
        let salt = guid::random_bytes::<32>().to_vec();
        let hashed = pbkdf2(&salt, PBKDF2_ITERATIONS, passwd);
        Shadow::Pbkdf2 {
            salt,
            iterations: PBKDF2_ITERATIONS,
            hashed,
        }
    }

    /// Whether `passwd` matches (constant time for PBKDF2).
    pub fn verify(&self, passwd: &str) -> bool {
        match self {
            Shadow::Pbkdf2 {
                salt,
                iterations,
                hashed,
            } => NonZeroU32::new(*iterations).is_some_and(|n| {
                ring::pbkdf2::verify(
                    ring::pbkdf2::PBKDF2_HMAC_SHA256,
                    n,
                    salt,
                    passwd.as_bytes(),
                    hashed,
                )
                .is_ok()
            }),
            Shadow::Legacy { salt, hashed } => {
                let v = Value::Array(vec![salt.as_str().into(), passwd.into()]);
                guid::guid_of(&v) == *hashed
            }
        }
    }

    /// Read a Synapse shadow: the legacy `(salt, hashed)` pair or HEAD's pbkdf2 dict.
    pub fn from_synapse(v: &Value) -> Option<Shadow> {
        match v {
            Value::Array(pair) => match pair.as_slice() {
                [Value::Str(salt), Value::Str(hashed)] => Some(Shadow::Legacy {
                    salt: salt.clone(),
                    hashed: hashed.clone(),
                }),
                _ => None,
            },
            Value::Map(_) if v.get("type").and_then(Value::as_str) == Some("pbkdf2") => {
                let params = v.get("func_params")?;
                if params.get("hash_name").and_then(Value::as_str) != Some("sha256") {
                    return None;
                }
                Some(Shadow::Pbkdf2 {
                    salt: params.get("salt")?.as_bin()?.to_vec(),
                    iterations: u32::try_from(params.get("iterations")?.as_i64()?).ok()?,
                    hashed: v.get("hashed")?.as_bin()?.to_vec(),
                })
            }
            _ => None,
        }
    }

    fn is_legacy(&self) -> bool {
        matches!(self, Shadow::Legacy { .. })
    }
}

fn pbkdf2(salt: &[u8], iterations: u32, passwd: &str) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let n = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        n,
        salt,
        passwd.as_bytes(),
        &mut out,
    );
    out
}

/// A user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The user's iden (a guid).
    pub iden: String,
    /// The user's unique name.
    pub name: String,
    /// Admin of everything.
    pub admin: bool,
    /// Locked users cannot log in and are allowed nothing.
    pub locked: bool,
    /// Archived users are locked and hidden from listings by default.
    pub archived: bool,
    /// Optional e-mail address.
    pub email: Option<String>,
    /// Role idens in check order.
    pub roles: Vec<String>,
    /// The user's own rules.
    pub rules: Vec<Rule>,
    /// Per-object rules by gate iden.
    pub gates: BTreeMap<String, GateEntry>,
    /// The password, if one is set.
    pub shadow: Option<Shadow>,
}

/// A role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// The role's iden (a guid).
    pub iden: String,
    /// The role's unique name.
    pub name: String,
    /// The role's rules.
    pub rules: Vec<Rule>,
    /// Per-object rules by gate iden.
    pub gates: BTreeMap<String, GateEntry>,
}

#[derive(Default)]
struct State {
    users: HashMap<String, User>,
    roles: HashMap<String, Role>,
}

/// What decided a permission check ([`Auth::allowed_reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason {
    /// Whether the permission is granted.
    pub allow: bool,
    /// Granted because the user is an admin (of the cell or of the gate).
    pub admin: bool,
    /// Length of the deciding rule's path (0 for admin or a locked user).
    pub rule_len: usize,
}

/// The auth subsystem of one cell.
pub struct Auth {
    slab: Slab,
    users_db: Db,
    roles_db: Db,
    state: RwLock<State>,
    /// Serializes changes so the store and memory change in the same order.
    writer: Mutex<()>,
    /// Keys of passwords verified since start (HMAC under a per-process key), so a repeated
    /// login skips the deliberately slow PBKDF2.
    verified: Mutex<HashMap<String, Vec<u8>>>,
    cache_key: ring::hmac::Key,
    /// Counts the changes since start, for those who follow them ([`Auth::changes`]).
    version: tokio::sync::watch::Sender<u64>,
    /// Why changes are refused, while they are (a mirror takes its leader's users and roles).
    read_only: super::ReadOnly,
}

/// Who or what a rule change applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A user.
    User,
    /// A role.
    Role,
}

impl Auth {
    /// Load the auth model from the cell's slab, creating role `all` and user `root` if absent
    /// and making sure root is admin and unlocked.
    pub fn open(slab: &Slab) -> SynResult<Arc<Auth>> {
        let users_db = slab.db("auth:users", false)?;
        let roles_db = slab.db("auth:roles", false)?;
        let mut state = State::default();
        slab.read(|txn| {
            for key in keys(&users_db, txn)? {
                if let Some(user) = users_db.get_serde::<User>(txn, &key)? {
                    state.users.insert(user.iden.clone(), user);
                }
            }
            for key in keys(&roles_db, txn)? {
                if let Some(role) = roles_db.get_serde::<Role>(txn, &key)? {
                    state.roles.insert(role.iden.clone(), role);
                }
            }
            Ok(())
        })?;
        let auth = Arc::new(Auth {
            slab: slab.clone(),
            users_db,
            roles_db,
            state: RwLock::new(state),
            writer: Mutex::new(()),
            verified: Mutex::new(HashMap::new()),
            cache_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &guid::random_bytes::<32>()),
            version: tokio::sync::watch::Sender::new(0),
            read_only: super::ReadOnly::default(),
        });
        if auth.role_by_name(ALL_ROLE).is_none() {
            auth.add_role(ALL_ROLE, None)?;
        }
        let root = match auth.user_by_name(ROOT_USER) {
            Some(root) => root,
            None => auth.add_user(ROOT_USER, None, None, None)?,
        };
        if !root.admin || root.locked || root.archived {
            auth.update_user(&root.iden, |u| {
                u.admin = true;
                u.locked = false;
                u.archived = false;
                Ok(())
            })?;
        }
        Ok(auth)
    }

    /// Write `users` and `roles` into the cell slab as they are (idens, names, rules, gates and
    /// password shadows kept; a record with the same iden is replaced), then open the auth
    /// model as [`Auth::open`] does and grant role `all` to every user. For offline imports
    /// (`syn migrate-200`): imported legacy shadows verify and are upgraded on first login.
    pub fn import(slab: &Slab, users: &[User], roles: &[Role]) -> SynResult<Arc<Auth>> {
        let users_db = slab.db("auth:users", false)?;
        let roles_db = slab.db("auth:roles", false)?;
        slab.write(|txn| {
            for role in roles {
                roles_db.put_serde(txn, role.iden.as_bytes(), role)?;
            }
            for user in users {
                users_db.put_serde(txn, user.iden.as_bytes(), user)?;
            }
            Ok(())
        })?;
        let auth = Auth::open(slab)?;
        if let Some(all) = auth.role_by_name(ALL_ROLE) {
            for user in auth.users() {
                if !user.roles.contains(&all.iden) {
                    auth.update_user(&user.iden, |u| {
                        u.roles.push(all.iden.clone());
                        Ok(())
                    })?;
                }
            }
        }
        Ok(auth)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A user by iden.
    pub fn user(&self, iden: &str) -> Option<User> {
        self.read().users.get(iden).cloned()
    }

    /// A user by name.
    pub fn user_by_name(&self, name: &str) -> Option<User> {
        self.read().users.values().find(|u| u.name == name).cloned()
    }

    /// A role by iden.
    pub fn role(&self, iden: &str) -> Option<Role> {
        self.read().roles.get(iden).cloned()
    }

    /// A role by name.
    pub fn role_by_name(&self, name: &str) -> Option<Role> {
        self.read().roles.values().find(|r| r.name == name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<User> {
        let mut all: Vec<User> = self.read().users.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every role, by name.
    pub fn roles(&self) -> Vec<Role> {
        let mut all: Vec<Role> = self.read().roles.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The user `iden`, or `NoSuchUser`.
    pub fn req_user(&self, iden: &str) -> SynResult<User> {
        self.user(iden).ok_or_else(|| no_such_user(iden))
    }

    /// The role `iden`, or `NoSuchRole`.
    pub fn req_role(&self, iden: &str) -> SynResult<Role> {
        self.role(iden).ok_or_else(|| {
            SynErr::new("NoSuchRole", format!("no role with iden {iden}")).with("iden", iden)
        })
    }

    /// Add a user (granted role `all`), with an optional password, e-mail and iden.
    pub fn add_user(
        &self,
        name: &str,
        passwd: Option<&str>,
        email: Option<&str>,
        iden: Option<&str>,
    ) -> SynResult<User> {
        check_name(name, "user")?;
        let iden = match iden {
            Some(i) if guid::is_guid(i) => i.to_owned(),
            Some(i) => return Err(SynErr::bad_arg(format!("user iden {i:?} is not a guid"))),
            None => guid::guid(),
        };
        self.req_writable()?;
        let shadow = passwd.map(validated_shadow).transpose()?;
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.user_by_name(name).is_some() {
            return Err(
                SynErr::new("DupUserName", format!("user {name:?} already exists"))
                    .with("name", name),
            );
        }
        if self.user(&iden).is_some() {
            return Err(SynErr::new(
                "DupIden",
                format!("user iden {iden} already exists"),
            ));
        }
        let roles = self
            .role_by_name(ALL_ROLE)
            .map(|r| vec![r.iden])
            .unwrap_or_default();
        let user = User {
            iden,
            name: name.to_owned(),
            admin: false,
            locked: false,
            archived: false,
            email: email.map(str::to_owned),
            roles,
            rules: Vec::new(),
            gates: BTreeMap::new(),
            shadow,
        };
        self.store_user(&user)?;
        Ok(user)
    }

    /// Delete a user (never root).
    pub fn del_user(&self, iden: &str) -> SynResult<()> {
        self.req_writable()?;
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let user = self.req_user(iden)?;
        if user.name == ROOT_USER {
            return Err(SynErr::new(
                "CantDelRootUser",
                "the root user cannot be deleted",
            ));
        }
        self.slab
            .write(|txn| self.users_db.delete(txn, iden.as_bytes()).map(|_| ()))?;
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .remove(iden);
        self.forget_verified(iden);
        self.changed();
        Ok(())
    }

    /// Add a role.
    pub fn add_role(&self, name: &str, iden: Option<&str>) -> SynResult<Role> {
        self.req_writable()?;
        check_name(name, "role")?;
        let iden = match iden {
            Some(i) if guid::is_guid(i) => i.to_owned(),
            Some(i) => return Err(SynErr::bad_arg(format!("role iden {i:?} is not a guid"))),
            None => guid::guid(),
        };
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.role_by_name(name).is_some() {
            return Err(
                SynErr::new("DupRoleName", format!("role {name:?} already exists"))
                    .with("name", name),
            );
        }
        let role = Role {
            iden,
            name: name.to_owned(),
            rules: Vec::new(),
            gates: BTreeMap::new(),
        };
        self.store_role(&role)?;
        Ok(role)
    }

    /// Delete a role (never `all`) and take it from every user.
    pub fn del_role(&self, iden: &str) -> SynResult<()> {
        self.req_writable()?;
        let role = self.req_role(iden)?;
        if role.name == ALL_ROLE {
            return Err(SynErr::new(
                "CantDelAllRole",
                "the all role cannot be deleted",
            ));
        }
        let holders: Vec<String> = self
            .read()
            .users
            .values()
            .filter(|u| u.roles.contains(&role.iden))
            .map(|u| u.iden.clone())
            .collect();
        for user in holders {
            self.update_user(&user, |u| {
                u.roles.retain(|r| *r != role.iden);
                Ok(())
            })?;
        }
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.slab
            .write(|txn| self.roles_db.delete(txn, iden.as_bytes()).map(|_| ()))?;
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .roles
            .remove(iden);
        self.changed();
        Ok(())
    }

    /// Change a user with `f`, store it durably, then publish it.
    pub fn update_user(
        &self,
        iden: &str,
        f: impl FnOnce(&mut User) -> SynResult<()>,
    ) -> SynResult<User> {
        self.req_writable()?;
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut user = self.req_user(iden)?;
        f(&mut user)?;
        if user.name == ROOT_USER && (!user.admin || user.locked || user.archived) {
            return Err(SynErr::new("BadArg", "root must stay an unlocked admin"));
        }
        self.store_user(&user)?;
        Ok(user)
    }

    /// Change a role with `f`, store it durably, then publish it.
    pub fn update_role(
        &self,
        iden: &str,
        f: impl FnOnce(&mut Role) -> SynResult<()>,
    ) -> SynResult<Role> {
        self.req_writable()?;
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut role = self.req_role(iden)?;
        f(&mut role)?;
        self.store_role(&role)?;
        Ok(role)
    }

    /// Change the rules of a user or role (on a gate if `gate` is given) with `f`.
    pub fn update_rules(
        &self,
        subject: Subject,
        iden: &str,
        gate: Option<&str>,
        f: impl FnOnce(&mut Vec<Rule>) -> SynResult<()>,
    ) -> SynResult<()> {
        let apply = |rules: &mut Vec<Rule>, gates: &mut BTreeMap<String, GateEntry>| match gate {
            Some(g) => f(&mut gates.entry(g.to_owned()).or_default().rules),
            None => f(rules),
        };
        match subject {
            Subject::User => self
                .update_user(iden, |u| apply(&mut u.rules, &mut u.gates))
                .map(|_| ()),
            Subject::Role => self
                .update_role(iden, |r| apply(&mut r.rules, &mut r.gates))
                .map(|_| ()),
        }
    }

    /// Set or clear a user's password.
    pub fn set_passwd(&self, iden: &str, passwd: Option<&str>) -> SynResult<()> {
        let shadow = passwd.map(validated_shadow).transpose()?;
        self.update_user(iden, |u| {
            u.shadow = shadow;
            Ok(())
        })?;
        self.forget_verified(iden);
        Ok(())
    }

    /// Whether `passwd` is the password of user `iden` (false for locked users and users
    /// without a password). A legacy shadow that matches is upgraded to PBKDF2.
    pub fn try_passwd(&self, iden: &str, passwd: &str) -> bool {
        let Some(user) = self.user(iden) else {
            return false;
        };
        if user.locked || user.archived {
            return false;
        }
        let Some(shadow) = &user.shadow else {
            return false;
        };
        let tag = ring::hmac::sign(&self.cache_key, passwd.as_bytes());
        if let Some(known) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(iden)
        {
            // Compare in constant time.
            if ring::hmac::verify(&self.cache_key, passwd.as_bytes(), known).is_ok() {
                return true;
            }
        }
        if !shadow.verify(passwd) {
            return false;
        }
        if shadow.is_legacy() && self.req_writable().is_ok() {
            let upgraded = Shadow::new(passwd);
            if let Err(e) = self.update_user(iden, |u| {
                u.shadow = Some(upgraded);
                Ok(())
            }) {
                tracing::warn!(user = %user.name, error = %e, "could not upgrade a legacy password shadow");
            }
        }
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(iden.to_owned(), tag.as_ref().to_vec());
        true
    }

    fn forget_verified(&self, iden: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(iden);
    }

    /// Whether user `iden` may do `perm` (on gate `gate` if given); `default` if no rule says.
    pub fn allowed(
        &self,
        iden: &str,
        perm: &[String],
        default: Option<bool>,
        gate: Option<&str>,
    ) -> Option<bool> {
        match self.allowed_reason(iden, perm, gate) {
            Some(reason) => Some(reason.allow),
            None if self.read().users.contains_key(iden) => default,
            None => None,
        }
    }

    /// Why user `iden` may (or may not) do `perm` (on gate `gate` if given): the admin status
    /// or the rule that decided, as Synapse's `getAllowedReason`; `None` if nothing decided.
    pub fn allowed_reason(
        &self,
        iden: &str,
        perm: &[String],
        gate: Option<&str>,
    ) -> Option<Reason> {
        let state = self.read();
        let user = state.users.get(iden)?;
        let admin = Reason {
            allow: true,
            admin: true,
            rule_len: 0,
        };
        if user.locked || user.archived {
            return Some(Reason {
                allow: false,
                admin: false,
                rule_len: 0,
            });
        }
        if user.admin {
            return Some(admin);
        }
        let by_rule = |rules: &[Rule]| {
            rules.iter().find(|r| r.matches(perm)).map(|r| Reason {
                allow: r.allow,
                admin: false,
                rule_len: r.path.len(),
            })
        };
        let gate_entry =
            |gates: &BTreeMap<String, GateEntry>| gate.and_then(|g| gates.get(g)).cloned();
        if let Some(entry) = gate_entry(&user.gates) {
            if entry.admin {
                return Some(admin);
            }
            if let Some(r) = by_rule(&entry.rules) {
                return Some(r);
            }
        }
        if let Some(r) = by_rule(&user.rules) {
            return Some(r);
        }
        let roles: Vec<&Role> = user
            .roles
            .iter()
            .filter_map(|r| state.roles.get(r))
            .collect();
        if gate.is_some() {
            for role in &roles {
                if let Some(entry) = gate_entry(&role.gates) {
                    if entry.admin {
                        return Some(admin);
                    }
                    if let Some(r) = by_rule(&entry.rules) {
                        return Some(r);
                    }
                }
            }
        }
        roles.iter().find_map(|role| by_rule(&role.rules))
    }

    /// Synapse's `AuthDeny` for user `iden` lacking `perm`, on the object `(iden, type)` of
    /// `gate` if given (the message Synapse's `raisePermDeny` builds).
    pub fn deny(&self, iden: &str, perm: &[String], gate: Option<(&str, &str)>) -> SynErr {
        let name = self.user(iden).map(|u| u.name).unwrap_or_default();
        let perm = perm.join(".");
        let who = format!(
            "User {} ({iden})",
            crate::cortex::model::py::repr_str(&name)
        );
        let mesg = match gate {
            None => format!("{who} must have permission {perm}"),
            Some((gate, kind)) => {
                format!("{who} must have permission {perm} on object {gate} ({kind}).")
            }
        };
        SynErr::auth_deny(mesg)
            .with("perm", perm.as_str())
            .with("user", iden)
            .with("username", name.as_str())
    }

    /// Whether role `iden` grants `perm` (on gate `gate` if given).
    pub fn role_allowed(&self, iden: &str, perm: &[String], gate: Option<&str>) -> Option<bool> {
        let role = self.role(iden)?;
        let rules = match gate {
            Some(g) => role
                .gates
                .get(g)
                .map(|e| e.rules.clone())
                .unwrap_or_default(),
            None => role.rules,
        };
        rules.iter().find(|r| r.matches(perm)).map(|r| r.allow)
    }

    /// The wire definition of a user, with its roles as idens or as full role definitions.
    pub fn pack_user(&self, user: &User, packroles: bool) -> Value {
        let roles = if packroles {
            user.roles
                .iter()
                .filter_map(|r| self.role(r))
                .map(|r| pack_role(&r))
                .collect()
        } else {
            user.roles.iter().map(|r| r.as_str().into()).collect()
        };
        Value::map([
            ("type", "user".into()),
            ("iden", user.iden.as_str().into()),
            ("name", user.name.as_str().into()),
            ("rules", pack_rules(&user.rules)),
            ("roles", Value::Array(roles)),
            ("admin", user.admin.into()),
            ("email", user.email.clone().into()),
            ("locked", user.locked.into()),
            ("archived", user.archived.into()),
            ("authgates", pack_gates(&user.gates)),
        ])
    }

    fn store_user(&self, user: &User) -> SynResult<()> {
        self.slab
            .write(|txn| self.users_db.put_serde(txn, user.iden.as_bytes(), user))?;
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .insert(user.iden.clone(), user.clone());
        self.changed();
        Ok(())
    }

    fn store_role(&self, role: &Role) -> SynResult<()> {
        self.slab
            .write(|txn| self.roles_db.put_serde(txn, role.iden.as_bytes(), role))?;
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .roles
            .insert(role.iden.clone(), role.clone());
        self.changed();
        Ok(())
    }

    /// Refuse every change with `IsReadOnly` and `why` (`None`: take changes again);
    /// [`Auth::replace_all`] still writes.
    pub fn set_read_only(&self, why: Option<String>) {
        self.read_only.set(why);
    }

    fn req_writable(&self) -> SynResult<()> {
        self.read_only.check()
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// A receiver that sees a new value after every change of a user or role.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Every user and role as stored, password shadows included (for mirrors).
    pub fn snapshot(&self) -> (Vec<User>, Vec<Role>) {
        let state = self.read();
        let mut users: Vec<User> = state.users.values().cloned().collect();
        let mut roles: Vec<Role> = state.roles.values().cloned().collect();
        users.sort_by(|a, b| a.iden.cmp(&b.iden));
        roles.sort_by(|a, b| a.iden.cmp(&b.iden));
        (users, roles)
    }

    /// Make the users and roles exactly `users` and `roles` (a leader's [`Auth::snapshot`]),
    /// durably and in one transaction; nothing changes if they are the same already. Root and
    /// role `all` must be among them. Whether anything changed.
    pub fn replace_all(&self, users: Vec<User>, roles: Vec<Role>) -> SynResult<bool> {
        let has_root = users
            .iter()
            .any(|u| u.name == ROOT_USER && u.admin && !u.locked);
        if !has_root || !roles.iter().any(|r| r.name == ALL_ROLE) {
            return Err(SynErr::bad_arg(
                "a replacement must hold an unlocked admin root and role all",
            ));
        }
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (have_users, have_roles) = self.snapshot();
        if have_users == users && have_roles == roles {
            return Ok(false);
        }
        self.slab.write(|txn| {
            for key in keys(&self.users_db, txn)? {
                self.users_db.delete(txn, &key)?;
            }
            for key in keys(&self.roles_db, txn)? {
                self.roles_db.delete(txn, &key)?;
            }
            for user in &users {
                self.users_db.put_serde(txn, user.iden.as_bytes(), user)?;
            }
            for role in &roles {
                self.roles_db.put_serde(txn, role.iden.as_bytes(), role)?;
            }
            Ok(())
        })?;
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.users = users.into_iter().map(|u| (u.iden.clone(), u)).collect();
            state.roles = roles.into_iter().map(|r| (r.iden.clone(), r)).collect();
        }
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.changed();
        Ok(true)
    }
}

/// The users and roles of [`Auth::snapshot`] as `syncAuth` sends them: msgpack bytes.
pub fn encode_auth(state: &(Vec<User>, Vec<Role>)) -> SynResult<Value> {
    rmp_serde::to_vec_named(state)
        .map(Value::Bin)
        .map_err(|e| SynErr::new("SynErr", format!("encoding users and roles: {e}")))
}

/// Read what [`encode_auth`] wrote.
pub fn decode_auth(item: &Value) -> SynResult<(Vec<User>, Vec<Role>)> {
    let bytes = match item {
        Value::Bin(bytes) => bytes,
        other => {
            return Err(SynErr::new(
                "BadMesgFormat",
                format!("users and roles must be bytes, not a {}", other.type_name()),
            ));
        }
    };
    rmp_serde::from_slice(bytes)
        .map_err(|e| SynErr::new("BadMesgFormat", format!("users and roles: {e}")))
}

/// The wire definition of a role.
pub fn pack_role(role: &Role) -> Value {
    Value::map([
        ("type", "role".into()),
        ("iden", role.iden.as_str().into()),
        ("name", role.name.as_str().into()),
        ("rules", pack_rules(&role.rules)),
        ("authgates", pack_gates(&role.gates)),
    ])
}

fn pack_rules(rules: &[Rule]) -> Value {
    Value::Array(rules.iter().map(Rule::to_value).collect())
}

fn pack_gates(gates: &BTreeMap<String, GateEntry>) -> Value {
    Value::Map(
        gates
            .iter()
            .map(|(g, e)| {
                (
                    Value::from(g.as_str()),
                    Value::map([("admin", e.admin.into()), ("rules", pack_rules(&e.rules))]),
                )
            })
            .collect(),
    )
}

fn keys(db: &Db, txn: &impl Txn) -> crate::storage::Result<Vec<Vec<u8>>> {
    db.iter(txn)?.map(|e| e.map(|(k, _)| k.to_vec())).collect()
}

fn no_such_user(iden: &str) -> SynErr {
    SynErr::new("NoSuchUser", format!("no user with iden {iden}")).with("iden", iden)
}

fn check_name(name: &str, what: &str) -> SynResult<()> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(SynErr::bad_arg(format!(
            "a {what} name must be 1 to 256 printable characters"
        )));
    }
    Ok(())
}

fn validated_shadow(passwd: &str) -> SynResult<Shadow> {
    if passwd.is_empty() {
        return Err(SynErr::bad_arg("a password cannot be empty"));
    }
    Ok(Shadow::new(passwd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (tempfile::TempDir, Arc<Auth>) {
        let tmp = tempfile::tempdir().unwrap();
        let slab = Slab::open(tmp.path().join("cell.lmdb"), Default::default()).unwrap();
        let auth = Auth::open(&slab).unwrap();
        (tmp, auth)
    }

    fn perm(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn bootstrap_makes_root_and_all() {
        let (_t, auth) = auth();
        let root = auth.user_by_name(ROOT_USER).unwrap();
        assert!(root.admin && root.shadow.is_none());
        let all = auth.role_by_name(ALL_ROLE).unwrap();
        let visi = auth.add_user("visi", None, None, None).unwrap();
        assert_eq!(visi.roles, vec![all.iden]);
    }

    #[test]
    fn a_snapshot_replaces_another_auth_whole_and_read_only_refuses_changes() {
        let (_l, leader) = auth();
        let visi = leader.add_user("visi", Some("pw"), None, None).unwrap();
        let role = leader.add_role("analysts", None).unwrap();
        leader
            .update_user(&visi.iden, |u| {
                u.roles.push(role.iden.clone());
                Ok(())
            })
            .unwrap();
        let (_m, mirror) = auth();
        mirror.add_user("eve", Some("x"), None, None).unwrap();
        let mut changes = mirror.changes();
        changes.mark_unchanged();
        mirror.set_read_only(Some("a mirror".into()));
        let err = mirror.add_user("mallory", None, None, None).unwrap_err();
        assert_eq!((err.name.as_str(), err.mesg()), ("IsReadOnly", "a mirror"));
        assert!(mirror.set_passwd(&visi.iden, Some("x")).is_err());

        let (users, roles) = leader.snapshot();
        let wire = encode_auth(&(users.clone(), roles.clone())).unwrap();
        let (users, roles) = decode_auth(&wire).unwrap();
        assert!(mirror.replace_all(users.clone(), roles.clone()).unwrap());
        assert!(changes.has_changed().unwrap());
        assert_eq!(mirror.snapshot(), leader.snapshot());
        assert!(mirror.user_by_name("eve").is_none());
        assert!(mirror.try_passwd(&visi.iden, "pw"));
        assert!(!mirror.replace_all(users, roles).unwrap(), "the same again");
        // Without root, a replacement is refused and nothing changes.
        let (mut users, roles) = leader.snapshot();
        users.retain(|u| u.name != ROOT_USER);
        assert!(mirror.replace_all(users, roles).is_err());
        assert_eq!(mirror.snapshot(), leader.snapshot());
        // What replace_all wrote is what a reopened auth reads.
        let reopened = Auth::open(&mirror.slab).unwrap();
        assert_eq!(reopened.snapshot(), leader.snapshot());
    }

    #[test]
    fn legacy_shadows_verify_and_are_upgraded() {
        let (_t, auth) = auth();
        let user = auth.add_user("old", None, None, None).unwrap();
        // A Synapse 0.1.x shadow: (salt, md5(msgpack((salt, passwd))).hexdigest()).
        let salt = "b1946ac92492d2347c6235b4d2611184".to_owned();
        let hashed = guid::guid_of(&Value::Array(vec![salt.as_str().into(), "secret".into()]));
        let shadow = Shadow::from_synapse(&Value::Array(vec![salt.into(), hashed.into()])).unwrap();
        assert!(shadow.is_legacy());
        auth.update_user(&user.iden, |u| {
            u.shadow = Some(shadow);
            Ok(())
        })
        .unwrap();
        assert!(!auth.try_passwd(&user.iden, "wrong"));
        assert!(auth.try_passwd(&user.iden, "secret"));
        let upgraded = auth.user(&user.iden).unwrap().shadow.unwrap();
        assert!(matches!(
            upgraded,
            Shadow::Pbkdf2 {
                iterations: PBKDF2_ITERATIONS,
                ..
            }
        ));
        assert!(upgraded.verify("secret") && !upgraded.verify("wrong"));
    }

    #[test]
    fn first_matching_rule_wins_in_synapse_order() {
        let (_t, auth) = auth();
        let user = auth.add_user("u", None, None, None).unwrap();
        let role = auth.add_role("r", None).unwrap();
        auth.update_user(&user.iden, |u| {
            u.roles.push(role.iden.clone());
            Ok(())
        })
        .unwrap();
        let rule = |allow, p: &str| Rule {
            allow,
            path: perm(p),
        };
        auth.update_rules(Subject::Role, &role.iden, None, |r| {
            r.push(rule(true, "node"));
            Ok(())
        })
        .unwrap();
        auth.update_rules(Subject::User, &user.iden, None, |r| {
            r.push(rule(false, "node.del"));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            auth.allowed(&user.iden, &perm("node.add.inet:ipv4"), None, None),
            Some(true)
        );
        assert_eq!(
            auth.allowed(&user.iden, &perm("node.del"), None, None),
            Some(false)
        );
        assert_eq!(
            auth.allowed(&user.iden, &perm("view.read"), None, None),
            None
        );
        assert_eq!(
            auth.allowed(&user.iden, &perm("view.read"), Some(true), None),
            Some(true)
        );
        // A gate rule applies on that gate only, before the user's own rules.
        auth.update_rules(Subject::User, &user.iden, Some("layer1"), |r| {
            r.push(rule(true, "node.del"));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            auth.allowed(&user.iden, &perm("node.del"), None, Some("layer1")),
            Some(true)
        );
        assert_eq!(
            auth.allowed(&user.iden, &perm("node.del"), None, Some("layer2")),
            Some(false)
        );
        auth.update_user(&user.iden, |u| {
            u.locked = true;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            auth.allowed(&user.iden, &perm("node.add"), None, None),
            Some(false)
        );
    }

    #[test]
    fn changes_are_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cell.lmdb");
        let iden = {
            let slab = Slab::open(&path, Default::default()).unwrap();
            let auth = Auth::open(&slab).unwrap();
            let u = auth
                .add_user("keep", Some("pw"), Some("k@example.test"), None)
                .unwrap();
            auth.add_role("team", None).unwrap();
            u.iden
        };
        let slab = Slab::open(&path, Default::default()).unwrap();
        let auth = Auth::open(&slab).unwrap();
        let u = auth.user(&iden).unwrap();
        assert_eq!(u.email.as_deref(), Some("k@example.test"));
        assert!(auth.try_passwd(&iden, "pw"));
        assert!(auth.role_by_name("team").is_some());
        assert_eq!(auth.users().len(), 2);
    }
}
