//! cel-go's math extension (`ext.Math()`, latest version, as Cerbos enables it).

use std::cmp::Ordering;

use super::{FunctionRegistry, no_overload};
use crate::cel::eval::{Activation, EvalError};
use crate::cel::value::{Value, numeric_cmp};

pub(super) fn register(r: &mut FunctionRegistry) {
    r.global("math.greatest", greatest);
    r.global("math.least", least);
    r.global("math.ceil", ceil);
    r.global("math.floor", floor);
    r.global("math.round", round);
    r.global("math.trunc", trunc);
    r.global("math.isInf", is_inf);
    r.global("math.isNaN", is_nan);
    r.global("math.isFinite", is_finite);
    r.global("math.abs", abs);
    r.global("math.sign", sign);
    r.global("math.sqrt", sqrt);
    r.global("math.bitAnd", bit_and);
    r.global("math.bitOr", bit_or);
    r.global("math.bitXor", bit_xor);
    r.global("math.bitNot", bit_not);
    r.global("math.bitShiftLeft", bit_shift_left);
    r.global("math.bitShiftRight", bit_shift_right);
}

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::Uint(_) | Value::Double(_))
}

/// Picks between two numbers of any numeric types; `keep_second` receives how the
/// first compares to the second. NaN compares as equal, as in cel-go.
fn pick(
    internal: &str,
    a: &Value,
    b: &Value,
    keep_second: fn(Ordering) -> bool,
) -> Result<Value, EvalError> {
    if !is_number(a) || !is_number(b) {
        return Err(EvalError::new(format!("no such overload: {internal}")));
    }
    let ord = numeric_cmp(a, b).unwrap_or(Ordering::Equal);
    Ok(if keep_second(ord) {
        b.clone()
    } else {
        a.clone()
    })
}

fn extreme(
    name: &str,
    internal: &str,
    args: &[Value],
    keep_second: fn(Ordering) -> bool,
) -> Result<Value, EvalError> {
    let items: &[Value] = match args {
        [] => {
            return Err(EvalError::new(format!(
                "{name}() requires at least one argument"
            )));
        }
        [Value::List(list)] => {
            if list.is_empty() {
                return Err(EvalError::new(format!(
                    "{internal}(list) argument must not be empty"
                )));
            }
            list
        }
        [single] if is_number(single) => return Ok(single.clone()),
        [_] => return Err(EvalError::new(format!("no such overload: {internal}"))),
        many => many,
    };
    let mut best = items[0].clone();
    if !is_number(&best) {
        return Err(EvalError::new(format!("no such overload: {internal}")));
    }
    for item in &items[1..] {
        best = pick(internal, &best, item, keep_second)?;
    }
    Ok(best)
}

fn greatest(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    extreme("math.greatest", "math.@max", args, |o| o == Ordering::Less)
}

fn least(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    extreme("math.least", "math.@min", args, |o| o == Ordering::Greater)
}

fn unary_double(name: &str, args: &[Value], f: fn(f64) -> Value) -> Result<Value, EvalError> {
    match args {
        [Value::Double(d)] => Ok(f(*d)),
        _ => Err(no_overload(name, args)),
    }
}

fn ceil(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    unary_double("math.ceil", args, |d| Value::Double(d.ceil()))
}

fn floor(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    unary_double("math.floor", args, |d| Value::Double(d.floor()))
}

/// Rounds half away from zero, as Go's `math.Round`.
fn round(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    unary_double("math.round", args, |d| Value::Double(d.round()))
}

fn trunc(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    unary_double("math.trunc", args, |d| Value::Double(d.trunc()))
}

fn is_inf(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    unary_double("math.isInf", args, |d| Value::Bool(d.is_infinite()))
}

fn is_nan(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    unary_double("math.isNaN", args, |d| Value::Bool(d.is_nan()))
}

fn is_finite(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    unary_double("math.isFinite", args, |d| Value::Bool(d.is_finite()))
}

fn abs(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Double(d)] => Ok(Value::Double(d.abs())),
        [Value::Int(i)] => i
            .checked_abs()
            .map(Value::Int)
            .ok_or_else(|| EvalError::new("integer overflow")),
        [Value::Uint(u)] => Ok(Value::Uint(*u)),
        _ => Err(no_overload("math.abs", args)),
    }
}

fn sign(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Double(d)] => Ok(Value::Double(if d.is_nan() {
            *d
        } else if *d > 0.0 {
            1.0
        } else if *d < 0.0 {
            -1.0
        } else {
            0.0
        })),
        [Value::Int(i)] => Ok(Value::Int(i.signum())),
        [Value::Uint(u)] => Ok(Value::Uint(u64::from(*u != 0))),
        _ => Err(no_overload("math.sign", args)),
    }
}

fn sqrt(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Double(d)] => Ok(Value::Double(d.sqrt())),
        [Value::Int(i)] => Ok(Value::Double((*i as f64).sqrt())),
        [Value::Uint(u)] => Ok(Value::Double((*u as f64).sqrt())),
        _ => Err(EvalError::new("no such overload: sqrt")),
    }
}

fn bitwise(
    name: &str,
    args: &[Value],
    int_op: fn(i64, i64) -> i64,
    uint_op: fn(u64, u64) -> u64,
) -> Result<Value, EvalError> {
    match args {
        [Value::Int(a), Value::Int(b)] => Ok(Value::Int(int_op(*a, *b))),
        [Value::Uint(a), Value::Uint(b)] => Ok(Value::Uint(uint_op(*a, *b))),
        _ => Err(no_overload(name, args)),
    }
}

fn bit_and(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    bitwise("math.bitAnd", args, |a, b| a & b, |a, b| a & b)
}

fn bit_or(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    bitwise("math.bitOr", args, |a, b| a | b, |a, b| a | b)
}

fn bit_xor(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    bitwise("math.bitXor", args, |a, b| a ^ b, |a, b| a ^ b)
}

fn bit_not(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Int(i)] => Ok(Value::Int(!i)),
        [Value::Uint(u)] => Ok(Value::Uint(!u)),
        _ => Err(no_overload("math.bitNot", args)),
    }
}

/// The shift amount: negative is an error; 64 or more shifts everything out.
fn shift_bits(name: &str, bits: i64) -> Result<Option<u32>, EvalError> {
    if bits < 0 {
        return Err(EvalError::new(format!("{name}() negative offset: {bits}")));
    }
    Ok(u32::try_from(bits).ok().filter(|b| *b < 64))
}

fn bit_shift_left(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    const NAME: &str = "math.bitShiftLeft";
    match args {
        [Value::Int(v), Value::Int(bits)] => {
            Ok(Value::Int(shift_bits(NAME, *bits)?.map_or(0, |b| v << b)))
        }
        [Value::Uint(v), Value::Int(bits)] => {
            Ok(Value::Uint(shift_bits(NAME, *bits)?.map_or(0, |b| v << b)))
        }
        _ => Err(no_overload(NAME, args)),
    }
}

/// Shifts right without sign extension, for ints too.
fn bit_shift_right(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
    const NAME: &str = "math.bitShiftRight";
    match args {
        [Value::Int(v), Value::Int(bits)] => Ok(Value::Int(
            shift_bits(NAME, *bits)?.map_or(0, |b| ((*v as u64) >> b) as i64),
        )),
        [Value::Uint(v), Value::Int(bits)] => {
            Ok(Value::Uint(shift_bits(NAME, *bits)?.map_or(0, |b| v >> b)))
        }
        _ => Err(no_overload(NAME, args)),
    }
}

#[cfg(test)]
mod tests {
    use crate::cel::testing::{assert_true, eval};

    #[test]
    fn greatest_and_least() {
        for src in [
            "math.greatest(1) == 1",
            "math.greatest(1u, 2u) == 2u",
            "math.greatest(-42.0, -21.5, -100.0) == -21.5",
            "math.greatest([-42.0, -21.5, -100.0]) == -21.5",
            "math.greatest(1, 2.5, 3u) == 3u",
            "type(math.greatest(1, 1.0)) == int",
            "math.least(1) == 1",
            "math.least(1u, 2u) == 1u",
            "math.least(-42.0, -21.5, -100.0) == -100.0",
            "math.least([-42.0, -21.5, -100.0]) == -100.0",
            "math.least([3, 1u, 2.0]) == 1u",
            "math.least(-1, 0u) == -1",
        ] {
            assert_true(src);
        }
        for src in [
            "math.greatest([])",
            "math.greatest('a')",
            "math.greatest(1, 'a')",
            "math.least(['a', 'b'])",
            "math.least()",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn rounding_and_signs() {
        for src in [
            "math.ceil(1.2) == 2.0",
            "math.ceil(-1.2) == -1.0",
            "math.floor(1.2) == 1.0",
            "math.floor(-1.2) == -2.0",
            "math.round(1.2) == 1.0",
            "math.round(1.5) == 2.0",
            "math.round(-1.5) == -2.0",
            "math.trunc(-1.3) == -1.0",
            "math.trunc(1.3) == 1.0",
            "math.abs(-1) == 1",
            "math.abs(1u) == 1u",
            "math.abs(-1.5) == 1.5",
            "math.sign(-42) == -1",
            "math.sign(0) == 0",
            "math.sign(42u) == 1u",
            "math.sign(-0.5) == -1.0",
            "math.isNaN(math.sign(double('NaN')))",
            "math.isInf(1.0 / 0.0)",
            "!math.isInf(1.2)",
            "math.isNaN(0.0 / 0.0)",
            "math.isFinite(1.2)",
            "!math.isFinite(0.0 / 0.0)",
            "math.sqrt(81) == 9.0",
            "math.sqrt(985.25) == 31.388692231439016",
            "math.isNaN(math.sqrt(-15))",
        ] {
            assert_true(src);
        }
        assert!(eval("math.abs(-9223372036854775807 - 1)").is_err());
        assert!(eval("math.ceil(1)").is_err());
        assert!(eval("math.sqrt('x')").is_err());
    }

    #[test]
    fn bit_operations() {
        for src in [
            "math.bitOr(1u, 2u) == 3u",
            "math.bitOr(-2, -4) == -2",
            "math.bitAnd(3u, 2u) == 2u",
            "math.bitAnd(3, 5) == 1",
            "math.bitAnd(-3, -5) == -7",
            "math.bitXor(3u, 5u) == 6u",
            "math.bitXor(1, 3) == 2",
            "math.bitNot(1) == -2",
            "math.bitNot(-1) == 0",
            "math.bitNot(0u) == 18446744073709551615u",
            "math.bitShiftLeft(1, 2) == 4",
            "math.bitShiftLeft(-1, 2) == -4",
            "math.bitShiftLeft(1u, 2) == 4u",
            "math.bitShiftLeft(1u, 200) == 0u",
            "math.bitShiftRight(1024, 2) == 256",
            "math.bitShiftRight(1024u, 2) == 256u",
            "math.bitShiftRight(1024u, 64) == 0u",
            "math.bitShiftRight(-1, 63) == 1",
        ] {
            assert_true(src);
        }
        assert!(eval("math.bitShiftLeft(1, -1)").is_err());
        assert!(eval("math.bitShiftRight(1u, -1)").is_err());
        assert!(eval("math.bitAnd(1, 1u)").is_err());
    }
}
