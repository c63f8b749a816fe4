//! cel-go's lists extension (`ext.Lists()`, latest version, as Cerbos enables it):
//! `slice`, `flatten`, `distinct`, `reverse`, `sort` and `lists.range`.
//! (`sortBy` is a macro of the compiler.)

use std::cmp::Ordering;

use super::{FunctionRegistry, arg_int, arg_list, arg_opt_int, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::Value;

/// The largest list `lists.range` builds (cel-go's default limit).
const MAX_RANGE_SIZE: i64 = 1_000_000;

pub(super) fn register(r: &mut FunctionRegistry) {
    r.receiver("slice", slice);
    r.receiver("flatten", flatten);
    r.receiver("distinct", distinct);
    r.receiver("reverse", reverse);
    r.receiver("sort", sort);
    r.global("lists.range", range);
}

fn slice(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 3 {
        return Err(no_overload("slice", args));
    }
    let list = arg_list("slice", args, 0)?;
    let start = arg_int("slice", args, 1)?;
    let end = arg_int("slice", args, 2)?;
    if start < 0 || end < 0 {
        return Err(EvalError::new(format!(
            "cannot slice({start}, {end}), negative indexes not supported"
        )));
    }
    if start > end {
        return Err(EvalError::new(format!(
            "cannot slice({start}, {end}), start index must be less than or equal to end index"
        )));
    }
    if (list.len() as i64) < end {
        return Err(EvalError::new(format!(
            "cannot slice({start}, {end}), list is length {}",
            list.len()
        )));
    }
    // 0 <= start <= end <= len here.
    Ok(Value::list(list[start as usize..end as usize].to_vec()))
}

fn flatten_into(out: &mut Vec<Value>, items: &[Value], depth: i64) {
    for item in items {
        match item {
            Value::List(inner) if depth > 0 => flatten_into(out, inner, depth - 1),
            other => out.push(other.clone()),
        }
    }
}

fn flatten(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if !(1..=2).contains(&args.len()) {
        return Err(no_overload("flatten", args));
    }
    let list = arg_list("flatten", args, 0)?;
    let depth = arg_opt_int("flatten", args, 1)?.unwrap_or(1);
    if depth < 0 {
        return Err(EvalError::new("level must be non-negative"));
    }
    let mut out = Vec::with_capacity(list.len());
    flatten_into(&mut out, list, depth);
    Ok(Value::list(out))
}

fn distinct(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let [Value::List(list)] = args else {
        return Err(no_overload("distinct", args));
    };
    let mut out: Vec<Value> = Vec::with_capacity(list.len());
    for item in list.iter() {
        if !out.iter().any(|seen| item.cel_eq(seen)) {
            out.push(item.clone());
        }
    }
    Ok(Value::list(out))
}

/// `reverse()` of the lists and strings extensions.
fn reverse(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::List(list)] => Ok(Value::list(list.iter().rev().cloned().collect())),
        [Value::String(s)] => Ok(super::strings::reverse_string(s)),
        _ => Err(no_overload("reverse", args)),
    }
}

/// Whether values of this kind have an order for `sort()`.
fn is_comparable(v: &Value) -> bool {
    matches!(
        v,
        Value::Int(_)
            | Value::Uint(_)
            | Value::Double(_)
            | Value::Bool(_)
            | Value::Duration(_)
            | Value::Timestamp(_)
            | Value::String(_)
            | Value::Bytes(_)
    )
}

fn sort(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    let [Value::List(list)] = args else {
        return Err(no_overload("sort", args));
    };
    let Some(first) = list.first() else {
        return Ok(Value::List(list.clone()));
    };
    if !is_comparable(first) {
        return Err(EvalError::new("list elements must be comparable"));
    }
    let kind = first.cel_type();
    if list.iter().any(|v| v.cel_type() != kind) {
        return Err(EvalError::new("list elements must have the same type"));
    }
    let mut sorted = list.to_vec();
    sorted.sort_by(|a, b| a.cel_cmp(b).unwrap_or(Ordering::Equal));
    Ok(Value::list(sorted))
}

fn range(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    if args.len() != 1 {
        return Err(no_overload("lists.range", args));
    }
    let n = arg_int("lists.range", args, 0)?;
    if n < 0 {
        return Err(EvalError::new(format!(
            "lists.range: size must be non-negative, got {n}"
        )));
    }
    if n > MAX_RANGE_SIZE {
        return Err(EvalError::new(format!(
            "lists.range: size {n} exceeds maximum allowed ({MAX_RANGE_SIZE})"
        )));
    }
    Ok(Value::list((0..n).map(Value::Int).collect()))
}

#[cfg(test)]
mod tests {
    use crate::cel::testing::{assert_true, eval};

    #[test]
    fn list_functions() {
        for src in [
            "[1, 2, 3, 4].slice(1, 3) == [2, 3]",
            "[1, 2, 3, 4].slice(2, 4) == [3, 4]",
            "[1, 2].slice(2, 2) == []",
            "[1, [2, 3], [4]].flatten() == [1, 2, 3, 4]",
            "[1, [2, [3, 4]]].flatten() == [1, 2, [3, 4]]",
            "[1, 2, [], [], [3, 4]].flatten() == [1, 2, 3, 4]",
            "[1, [2, [3, [4]]]].flatten(2) == [1, 2, 3, [4]]",
            "[1, [2]].flatten(0) == [1, [2]]",
            "[1, 2, 2, 3, 3, 3].distinct() == [1, 2, 3]",
            "['b', 'b', 'c', 'a', 'c'].distinct() == ['b', 'c', 'a']",
            "[1, 'b', 2, 'b'].distinct() == [1, 'b', 2]",
            "[1, 1.0, 1u].distinct() == [1]",
            "[5, 3, 1, 2].reverse() == [2, 1, 3, 5]",
            "'gums'.reverse() == 'smug'",
            "'héllo'.reverse() == 'olléh'",
            "[3, 2, 1].sort() == [1, 2, 3]",
            "['b', 'c', 'a'].sort() == ['a', 'b', 'c']",
            "[2.5, -1.0].sort() == [-1.0, 2.5]",
            "[duration('2s'), duration('1s')].sort() == [duration('1s'), duration('2s')]",
            "[].sort() == []",
            "lists.range(3) == [0, 1, 2]",
            "lists.range(0) == []",
        ] {
            assert_true(src);
        }
        for src in [
            "[1, 2].slice(-1, 1)",
            "[1, 2].slice(2, 1)",
            "[1, 2].slice(0, 3)",
            "[1, [2]].flatten(-1)",
            "[1, 'b'].sort()",
            "[[1, 2, 3]].sort()",
            "[1, 2.0].sort()",
            "lists.range(-1)",
            "lists.range(1000001)",
            "{'a': 1}.reverse()",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }
}
