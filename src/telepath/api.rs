//! What a shared object looks like to telepath: a table of named methods.
//!
//! A service describes its API once as a [`Methods`] table (name, plain call or generator,
//! handler). The table gives both the `sharinfo` the handshake advertises and the dispatch, so
//! the two can never disagree. An API may inherit another's table (a cortex's API inherits the
//! cell's). Telepath knows nothing of any service: it only calls [`Api::call`].

use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The Synapse release whose telepath behaviour syn matches, as advertised in `syn:version`.
pub const SYNAPSE_VERSION: (i64, i64, i64) = (2, 256, 0);

/// A boxed, sendable future.
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The items of a generator method, produced by another task; dropping it cancels the producer.
pub type Genr = mpsc::Receiver<SynResult<Value>>;

/// An item that writes its own msgpack bytes: the producer hands it over cheaply and the
/// link's task encodes it, without a [`Value`] built in between.
pub trait Packed: Send {
    /// Append the item's msgpack encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// An item of a [`Stream`]: a value, or one that encodes itself.
pub enum Yield {
    /// A value, encoded as any other.
    Value(Value),
    /// Encoded by the item itself, on the link's task.
    Packed(Box<dyn Packed>),
}

/// The items of a generator method that may hand over [`Packed`] items; dropping it cancels
/// the producer.
pub type Stream = mpsc::Receiver<SynResult<Yield>>;

/// What a method call gives back.
pub enum Reply {
    /// A plain value (`t2:fini`).
    Value(Value),
    /// A stream of values (`t2:genr`, `t2:yield`...).
    Genr(Genr),
    /// A generator whose items may encode themselves (on the wire as [`Reply::Genr`]).
    Stream(Stream),
    /// A new shared object living in the caller's session (`t2:share`).
    Share(Arc<dyn Api>),
}

/// An object reachable over telepath.
pub trait Api: Send + Sync + 'static {
    /// The `sharinfo` map: methods (with generator flags) and class names.
    fn sharinfo(&self) -> Value;
    /// Start a call of `meth`; `None` when there is no such method.
    fn call(self: Arc<Self>, meth: &str, args: Args) -> Option<BoxFut<SynResult<Reply>>>;
}

/// Implemented by API types that keep their methods in a static [`Methods`] table.
pub trait HasMethods: Send + Sync + Sized + 'static {
    /// The type's method table.
    fn methods() -> &'static Methods<Self>;
}

impl<T: HasMethods> Api for T {
    fn sharinfo(&self) -> Value {
        T::methods().sharinfo.clone()
    }

    fn call(self: Arc<Self>, meth: &str, args: Args) -> Option<BoxFut<SynResult<Reply>>> {
        T::methods().dispatch(self, meth, args)
    }
}

type Handler<T> = Arc<dyn Fn(Arc<T>, Args) -> BoxFut<SynResult<Reply>> + Send + Sync>;

struct Entry<T> {
    genr: bool,
    handler: Handler<T>,
}

/// A method table for API type `T`.
pub struct Methods<T> {
    classes: Vec<String>,
    entries: BTreeMap<String, Entry<T>>,
    sharinfo: Value,
}

impl<T: Send + Sync + 'static> Methods<T> {
    /// An empty table for an API whose Python class path is `class` (e.g. `synapse.lib.cell.CellApi`).
    pub fn new(class: &str) -> Self {
        Methods {
            classes: vec![class.to_owned()],
            entries: BTreeMap::new(),
            sharinfo: Value::Nil,
        }
    }

    /// Add a method that returns one value.
    pub fn call<F, Fut>(self, name: &str, f: F) -> Self
    where
        F: Fn(Arc<T>, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = SynResult<Value>> + Send + 'static,
    {
        self.add(name, false, f, Reply::Value)
    }

    /// Add a generator method.
    pub fn genr<F, Fut>(self, name: &str, f: F) -> Self
    where
        F: Fn(Arc<T>, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = SynResult<Genr>> + Send + 'static,
    {
        self.add(name, true, f, Reply::Genr)
    }

    /// Add a generator method whose items may encode themselves.
    pub fn stream<F, Fut>(self, name: &str, f: F) -> Self
    where
        F: Fn(Arc<T>, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = SynResult<Stream>> + Send + 'static,
    {
        self.add(name, true, f, Reply::Stream)
    }

    /// Add a method that returns a new shared object.
    pub fn share<F, Fut>(self, name: &str, f: F) -> Self
    where
        F: Fn(Arc<T>, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = SynResult<Arc<dyn Api>>> + Send + 'static,
    {
        self.add(name, false, f, Reply::Share)
    }

    /// Register `f` under `name`, turning its result into a [`Reply`] with `reply`.
    fn add<F, Fut, R>(mut self, name: &str, genr: bool, f: F, reply: fn(R) -> Reply) -> Self
    where
        F: Fn(Arc<T>, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = SynResult<R>> + Send + 'static,
        R: 'static,
    {
        let handler: Handler<T> = Arc::new(move |api, args| {
            let fut = f(api, args);
            Box::pin(async move { fut.await.map(reply) })
        });
        self.entries
            .insert(name.to_owned(), Entry { genr, handler });
        self
    }

    /// Take every method of `parent` (unless this table defines it), reaching the parent API
    /// through `project`. The parent's classes follow this table's, as in a Python MRO.
    pub fn inherit<P: Send + Sync + 'static>(
        mut self,
        parent: &'static Methods<P>,
        project: fn(&T) -> Arc<P>,
    ) -> Self {
        for (name, entry) in &parent.entries {
            if self.entries.contains_key(name) {
                continue;
            }
            let inner = entry.handler.clone();
            let handler: Handler<T> = Arc::new(move |api, args| inner(project(&api), args));
            self.entries.insert(
                name.clone(),
                Entry {
                    genr: entry.genr,
                    handler,
                },
            );
        }
        self.classes.extend(parent.classes.iter().cloned());
        self
    }

    /// Finish the table: compute the `sharinfo` the handshake advertises.
    pub fn build(mut self) -> Self {
        let meths = self
            .entries
            .iter()
            .map(|(name, e)| {
                let info = if e.genr {
                    Value::map([("genr", Value::Bool(true))])
                } else {
                    Value::Map(vec![])
                };
                (Value::Str(name.clone()), info)
            })
            .collect();
        let (a, b, c) = SYNAPSE_VERSION;
        self.sharinfo = Value::map([
            ("meths", Value::Map(meths)),
            ("syn:commit", Value::from("")),
            (
                "syn:version",
                Value::Array(vec![a.into(), b.into(), c.into()]),
            ),
            (
                "classes",
                Value::Array(self.classes.iter().map(|c| c.as_str().into()).collect()),
            ),
        ]);
        self
    }

    /// Whether the table has a method called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn dispatch(&self, api: Arc<T>, meth: &str, args: Args) -> Option<BoxFut<SynResult<Reply>>> {
        let entry = self.entries.get(meth)?;
        Some((entry.handler)(api, args))
    }
}

/// The arguments of one call: positional and keyword, taken one by one by the handler.
#[derive(Debug, Default)]
pub struct Args {
    pos: Vec<Option<Value>>,
    kw: Vec<(String, Value)>,
}

impl Args {
    /// Arguments from the wire: a positional tuple and a keyword map (keys must be strings).
    pub fn from_wire(args: Vec<Value>, kwargs: Vec<(Value, Value)>) -> SynResult<Args> {
        let mut kw = Vec::with_capacity(kwargs.len());
        for (k, v) in kwargs {
            match k {
                Value::Str(k) => kw.push((k, v)),
                other => {
                    return Err(SynErr::bad_arg(format!(
                        "keyword argument names must be str, not {}",
                        other.type_name()
                    )));
                }
            }
        }
        Ok(Args {
            pos: args.into_iter().map(Some).collect(),
            kw,
        })
    }

    /// Positional arguments only.
    pub fn positional(args: Vec<Value>) -> Args {
        Args {
            pos: args.into_iter().map(Some).collect(),
            kw: Vec::new(),
        }
    }

    /// Take the argument at position `idx`, or the keyword `name`; `None` if absent.
    pub fn take(&mut self, idx: usize, name: &str) -> Option<Value> {
        if let Some(v) = self.pos.get_mut(idx).and_then(Option::take) {
            return Some(v);
        }
        let i = self.kw.iter().position(|(k, _)| k == name)?;
        Some(self.kw.remove(i).1)
    }

    /// A required argument converted to `V`.
    pub fn req<V: FromValue>(&mut self, idx: usize, name: &str) -> SynResult<V> {
        match self.take(idx, name) {
            Some(v) => V::from_value(v).map_err(|want| wrong_type(name, want)),
            None => Err(
                SynErr::bad_arg(format!("missing required argument {name:?}")).with("name", name),
            ),
        }
    }

    /// An optional argument: absent or `None` gives `None`.
    pub fn opt<V: FromValue>(&mut self, idx: usize, name: &str) -> SynResult<Option<V>> {
        match self.take(idx, name) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => V::from_value(v)
                .map(Some)
                .map_err(|want| wrong_type(name, want)),
        }
    }

    /// Fail with `BadArg` if any argument was not taken.
    pub fn done(self) -> SynResult<()> {
        let extra_pos = self.pos.iter().filter(|v| v.is_some()).count();
        if extra_pos > 0 {
            return Err(SynErr::bad_arg(format!(
                "{extra_pos} unexpected positional argument(s)"
            )));
        }
        if let Some((k, _)) = self.kw.first() {
            return Err(
                SynErr::bad_arg(format!("unexpected keyword argument {k:?}"))
                    .with("name", k.as_str()),
            );
        }
        Ok(())
    }
}

fn wrong_type(name: &str, want: &str) -> SynErr {
    SynErr::bad_arg(format!("argument {name:?} must be {want}")).with("name", name)
}

/// Conversion of an argument value; the error names the expected type.
pub trait FromValue: Sized {
    /// Convert, or say what type was expected.
    fn from_value(v: Value) -> Result<Self, &'static str>;
}

impl FromValue for Value {
    fn from_value(v: Value) -> Result<Self, &'static str> {
        Ok(v)
    }
}

impl FromValue for String {
    fn from_value(v: Value) -> Result<Self, &'static str> {
        match v {
            Value::Str(s) => Ok(s),
            _ => Err("a str"),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: Value) -> Result<Self, &'static str> {
        match v {
            Value::Bool(b) => Ok(b),
            _ => Err("a bool"),
        }
    }
}

impl FromValue for i64 {
    fn from_value(v: Value) -> Result<Self, &'static str> {
        v.as_i64().ok_or("an int")
    }
}

impl FromValue for Vec<Value> {
    fn from_value(v: Value) -> Result<Self, &'static str> {
        match v {
            Value::Array(a) => Ok(a),
            _ => Err("a list"),
        }
    }
}

impl FromValue for Vec<String> {
    fn from_value(v: Value) -> Result<Self, &'static str> {
        match v {
            Value::Array(a) => a
                .into_iter()
                .map(|s| String::from_value(s).map_err(|_| "a list of str"))
                .collect(),
            _ => Err("a list of str"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Parent;
    struct Child {
        parent: Arc<Parent>,
    }

    static PARENT: std::sync::LazyLock<Methods<Parent>> = std::sync::LazyLock::new(|| {
        Methods::<Parent>::new("test.Parent")
            .call("hello", |_api, mut args| async move {
                let who: String = args.req(0, "who")?;
                args.done()?;
                Ok(Value::from(format!("hello {who}")))
            })
            .call("shadowed", |_api, _args| async {
                Ok(Value::from("parent"))
            })
            .build()
    });

    static CHILD: std::sync::LazyLock<Methods<Child>> = std::sync::LazyLock::new(|| {
        Methods::<Child>::new("test.Child")
            .call("shadowed", |_api, _args| async { Ok(Value::from("child")) })
            .genr("count", |_api, mut args| async move {
                let n: i64 = args.req(0, "n")?;
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    for i in 0..n {
                        let _ = tx.send(Ok(Value::from(i))).await;
                    }
                });
                Ok(rx)
            })
            .inherit(&PARENT, |c: &Child| c.parent.clone())
            .build()
    });

    impl HasMethods for Parent {
        fn methods() -> &'static Methods<Self> {
            &PARENT
        }
    }
    impl HasMethods for Child {
        fn methods() -> &'static Methods<Self> {
            &CHILD
        }
    }

    async fn value(api: &Arc<Child>, meth: &str, args: Args) -> SynResult<Value> {
        match api.clone().call(meth, args).expect("method exists").await? {
            Reply::Value(v) => Ok(v),
            _ => panic!("expected a value"),
        }
    }

    #[tokio::test]
    async fn inheritance_dispatch_and_sharinfo() {
        let api = Arc::new(Child {
            parent: Arc::new(Parent),
        });
        assert_eq!(
            value(&api, "hello", Args::positional(vec!["visi".into()]))
                .await
                .unwrap(),
            Value::from("hello visi")
        );
        assert_eq!(
            value(&api, "shadowed", Args::default()).await.unwrap(),
            Value::from("child")
        );
        assert!(api.clone().call("nope", Args::default()).is_none());
        let info = api.sharinfo();
        let meths = info.get("meths").unwrap();
        assert_eq!(
            meths.get("count").unwrap().get("genr"),
            Some(&Value::Bool(true))
        );
        assert_eq!(meths.get("hello"), Some(&Value::Map(vec![])));
        assert_eq!(
            info.get("classes").unwrap(),
            &Value::Array(vec!["test.Child".into(), "test.Parent".into()])
        );
        match api
            .clone()
            .call("count", Args::positional(vec![3i64.into()]))
            .unwrap()
            .await
        {
            Ok(Reply::Genr(mut rx)) => {
                let mut got = vec![];
                while let Some(item) = rx.recv().await {
                    got.push(item.unwrap());
                }
                assert_eq!(got, vec![Value::from(0i64), 1i64.into(), 2i64.into()]);
            }
            _ => panic!("expected a generator"),
        }
    }

    #[tokio::test]
    async fn argument_errors_are_bad_arg() {
        let api = Arc::new(Child {
            parent: Arc::new(Parent),
        });
        let e = value(&api, "hello", Args::default()).await.unwrap_err();
        assert_eq!(e.name, "BadArg");
        let e = value(&api, "hello", Args::positional(vec![Value::Int(1)]))
            .await
            .unwrap_err();
        assert!(e.mesg().contains("must be a str"), "{e}");
        let args = Args::from_wire(vec!["a".into(), "b".into()], vec![]).unwrap();
        assert!(
            value(&api, "hello", args)
                .await
                .unwrap_err()
                .mesg()
                .contains("unexpected")
        );
        let args = Args::from_wire(vec![], vec![("who".into(), "kw".into())]).unwrap();
        assert_eq!(
            value(&api, "hello", args).await.unwrap(),
            Value::from("hello kw")
        );
        assert!(Args::from_wire(vec![], vec![(Value::Int(1), Value::Nil)]).is_err());
    }
}
