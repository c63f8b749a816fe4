//! Function libraries: the CEL standard library and the extensions Cerbos enables.
//!
//! Every function is a plain `fn(&[Value], &Activation) -> Result<Value, EvalError>`.
//! For a receiver-style call (`x.f(y)`) the receiver is `args[0]`.
//! Functions are looked up once, when an expression is compiled.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::eval::{Activation, EvalError};
use super::value::Value;

mod cerbos;
mod encoders;
mod lists;
mod math;
mod network;
mod regexes;
mod sets;
mod spiffe;
mod std_lib;

/// Formatting helpers shared with JSON conversion.
pub(crate) mod std_lib_format {
    pub(crate) use super::std_lib::{
        format_double, format_duration, format_timestamp, parse_duration,
    };
}
mod strings;
mod time;

pub(crate) use strings::format_check;

/// A native function implementation.
pub(crate) type NativeFn = fn(&[Value], &Activation) -> Result<Value, EvalError>;

/// How a function may be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CallStyle {
    /// `f(x, y)`, including namespaced names like `math.greatest(x, y)`.
    Global,
    /// `x.f(y)`.
    Receiver,
}

/// All functions known to the compiler, by name and call style.
#[derive(Default)]
pub(crate) struct FunctionRegistry {
    entries: HashMap<&'static str, [Option<NativeFn>; 2]>,
}

impl FunctionRegistry {
    fn slot(style: CallStyle) -> usize {
        match style {
            CallStyle::Global => 0,
            CallStyle::Receiver => 1,
        }
    }

    /// Registers a function for global calls.
    pub(crate) fn global(&mut self, name: &'static str, f: NativeFn) {
        self.entries.entry(name).or_default()[0] = Some(f);
    }

    /// Registers a function for receiver-style calls.
    pub(crate) fn receiver(&mut self, name: &'static str, f: NativeFn) {
        self.entries.entry(name).or_default()[1] = Some(f);
    }

    /// Registers a function under both call styles (`size(x)` and `x.size()`).
    fn both(&mut self, name: &'static str, f: NativeFn) {
        self.global(name, f);
        self.receiver(name, f);
    }

    /// Finds a function.
    pub(crate) fn get(&self, name: &str, style: CallStyle) -> Option<NativeFn> {
        self.entries.get(name).and_then(|e| e[Self::slot(style)])
    }
}

/// The registry with every library Gatehouse provides, built once.
pub(crate) fn registry() -> &'static FunctionRegistry {
    static REGISTRY: OnceLock<FunctionRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = FunctionRegistry::default();
        std_lib::register(&mut r);
        time::register(&mut r);
        strings::register(&mut r);
        lists::register(&mut r);
        math::register(&mut r);
        sets::register(&mut r);
        encoders::register(&mut r);
        regexes::register(&mut r);
        network::register(&mut r);
        cerbos::register(&mut r);
        spiffe::register(&mut r);
        r
    })
}

/// The error for a call whose argument types match no overload.
pub(crate) fn no_overload(name: &str, args: &[Value]) -> EvalError {
    let types: Vec<&str> = args.iter().map(Value::type_name).collect();
    EvalError::new(format!("no such overload: {name}({})", types.join(", ")))
}

/// Checks the argument count.
fn arity(name: &str, args: &[Value], n: usize) -> Result<(), EvalError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(no_overload(name, args))
    }
}

/// The string argument at `i`.
pub(crate) fn arg_str<'a>(name: &str, args: &'a [Value], i: usize) -> Result<&'a str, EvalError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(no_overload(name, args)),
    }
}

/// The int argument at `i` (an integral double is accepted, as JSON numbers are doubles).
pub(crate) fn arg_int(name: &str, args: &[Value], i: usize) -> Result<i64, EvalError> {
    match args.get(i) {
        Some(Value::Int(v)) => Ok(*v),
        Some(Value::Uint(v)) => i64::try_from(*v).map_err(|_| no_overload(name, args)),
        _ => Err(no_overload(name, args)),
    }
}

/// The list argument at `i`.
pub(crate) fn arg_list<'a>(
    name: &str,
    args: &'a [Value],
    i: usize,
) -> Result<&'a [Value], EvalError> {
    match args.get(i) {
        Some(Value::List(l)) => Ok(l),
        _ => Err(no_overload(name, args)),
    }
}

/// The optional int argument at `i`: `Ok(None)` when absent.
pub(crate) fn arg_opt_int(name: &str, args: &[Value], i: usize) -> Result<Option<i64>, EvalError> {
    if args.len() <= i {
        Ok(None)
    } else {
        arg_int(name, args, i).map(Some)
    }
}

/// A function registered by an earlier library, kept so that a later library can
/// extend it to new argument types (for example `size(hierarchy)` or `string(ip)`)
/// and hand every other call back to it.
pub(crate) struct Fallback(OnceLock<NativeFn>);

impl Fallback {
    /// An empty slot, for a `static`.
    pub(crate) const fn new() -> Self {
        Fallback(OnceLock::new())
    }

    /// Remembers the function currently registered under `name` and `style`.
    pub(crate) fn capture(&self, r: &FunctionRegistry, name: &str, style: CallStyle) {
        if let Some(f) = r.get(name, style) {
            // The registry is built once; should it be built again, the first capture stays.
            let _ = self.0.set(f);
        }
    }

    /// Calls the remembered function, or fails with `no such overload` when there is none.
    pub(crate) fn call(
        &self,
        name: &str,
        args: &[Value],
        act: &Activation,
    ) -> Result<Value, EvalError> {
        match self.0.get() {
            Some(f) => f(args, act),
            None => Err(no_overload(name, args)),
        }
    }
}
