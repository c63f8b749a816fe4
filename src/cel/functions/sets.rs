//! cel-go's sets extension (`ext.Sets()`): membership tests between lists, with
//! CEL's heterogeneous equality (`1 == 1.0`).

use super::{FunctionRegistry, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::Value;

pub(super) fn register(r: &mut FunctionRegistry) {
    r.global("sets.contains", contains);
    r.global("sets.equivalent", equivalent);
    r.global("sets.intersects", intersects);
}

fn two_lists<'a>(name: &str, args: &'a [Value]) -> Result<(&'a [Value], &'a [Value]), EvalError> {
    match args {
        [Value::List(a), Value::List(b)] => Ok((a, b)),
        _ => Err(no_overload(name, args)),
    }
}

fn has(list: &[Value], v: &Value) -> bool {
    list.iter().any(|x| x.cel_eq(v))
}

/// Whether every element of `sub` is in `list`.
fn contains_all(list: &[Value], sub: &[Value]) -> bool {
    sub.iter().all(|v| has(list, v))
}

/// `sets.contains(list, sublist)`: every element of `sublist` is in `list`.
fn contains(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let (list, sub) = two_lists("sets.contains", args)?;
    Ok(Value::Bool(contains_all(list, sub)))
}

/// `sets.equivalent(a, b)`: each list contains the other (duplicates ignored).
fn equivalent(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let (a, b) = two_lists("sets.equivalent", args)?;
    Ok(Value::Bool(contains_all(a, b) && contains_all(b, a)))
}

/// `sets.intersects(a, b)`: at least one element in common.
fn intersects(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let (a, b) = two_lists("sets.intersects", args)?;
    Ok(Value::Bool(a.iter().any(|v| has(b, v))))
}

#[cfg(test)]
mod tests {
    use crate::cel::testing::{assert_true, eval};

    #[test]
    fn set_relations() {
        for src in [
            "sets.contains([], [])",
            "sets.contains([1], [])",
            "sets.contains([1, 2, 3, 4], [2, 3])",
            "sets.contains([1, 2.0, 3u], [1.0, 2u, 3])",
            "!sets.contains([1, 2], [2, 2, 3])",
            "sets.contains([[1], [2, 3]], [[2, 3.0]])",
            "sets.equivalent([], [])",
            "sets.equivalent([1], [1, 1])",
            "sets.equivalent([1, 2, 3], [3u, 2.0, 1])",
            "!sets.equivalent([1, 2], [2, 2, 2])",
            "sets.intersects([1], [1, 2])",
            "sets.intersects([1.0, 2], [2u])",
            "!sets.intersects([], [])",
            "!sets.intersects([1], [])",
            "!sets.intersects(['a'], [1])",
        ] {
            assert_true(src);
        }
        assert!(eval("sets.contains('a', ['a'])").is_err());
        assert!(eval("sets.intersects([1], 1)").is_err());
    }
}
