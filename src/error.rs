//! Synapse's named errors: the `(ExcName, {mesg, ...})` pairs that cross telepath.
//!
//! Every service raises these; telepath carries them as `(False, (name, info))`, and Python
//! clients turn the name into the matching `synapse.exc` class.

use crate::msgpack::Value;
use std::fmt;

/// A Synapse-style error: a class name such as `AuthDeny` and its keyword fields.
#[derive(Clone, Debug, PartialEq)]
pub struct SynErr {
    /// The exception class name (`AuthDeny`, `NoSuchMeth`, `BadArg`, ...).
    pub name: String,
    /// The keyword fields, `mesg` first.
    pub info: Vec<(String, Value)>,
}

impl SynErr {
    /// An error named `name` with message `mesg`.
    pub fn new(name: impl Into<String>, mesg: impl Into<String>) -> Self {
        SynErr {
            name: name.into(),
            info: vec![("mesg".into(), Value::Str(mesg.into()))],
        }
    }

    /// Add a keyword field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.info.push((key.into(), value.into()));
        self
    }

    /// The message text.
    pub fn mesg(&self) -> &str {
        self.field("mesg").and_then(Value::as_str).unwrap_or("")
    }

    /// A keyword field by name.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.info.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `(name, info)` as it goes on the wire.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Str(self.name.clone()),
            Value::Map(
                self.info
                    .iter()
                    .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                    .collect(),
            ),
        ])
    }

    /// Read `(name, info)` from the wire; anything else becomes a `BadMesgFormat` error.
    pub fn from_value(v: &Value) -> SynErr {
        let parsed = v.as_array().and_then(|pair| match pair {
            [Value::Str(name), Value::Map(info)] => Some(SynErr {
                name: name.clone(),
                info: info
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
                    .collect(),
            }),
            _ => None,
        });
        parsed.unwrap_or_else(|| SynErr::new("BadMesgFormat", format!("malformed error: {v}")))
    }

    /// `AuthDeny`.
    pub fn auth_deny(mesg: impl Into<String>) -> Self {
        SynErr::new("AuthDeny", mesg)
    }

    /// Whether the error means a telepath link went away (worth trying again), not a refusal.
    pub fn is_link_error(&self) -> bool {
        matches!(
            self.name.as_str(),
            "LinkErr" | "LinkShutDown" | "TimeOut" | "IsFini" | "ConnectionRefusedError"
        )
    }

    /// `BadArg`.
    pub fn bad_arg(mesg: impl Into<String>) -> Self {
        SynErr::new("BadArg", mesg)
    }

    /// `NoSuchMeth` for method `name`.
    pub fn no_such_meth(name: &str) -> Self {
        SynErr::new("NoSuchMeth", format!("{name} is not a valid method")).with("name", name)
    }
}

impl fmt::Display for SynErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.mesg())?;
        for (k, v) in &self.info {
            if !matches!(k.as_str(), "mesg" | "efile" | "eline" | "esrc" | "ename") {
                write!(f, " {k}={v}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SynErr {}

/// Results that carry a [`SynErr`].
pub type SynResult<T> = Result<T, SynErr>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip() {
        let e = SynErr::no_such_meth("foo");
        assert_eq!(SynErr::from_value(&e.to_value()), e);
        assert_eq!(
            e.to_string(),
            "NoSuchMeth: foo is not a valid method name=\"foo\""
        );
        assert_eq!(SynErr::from_value(&Value::Nil).name, "BadMesgFormat");
    }
}
