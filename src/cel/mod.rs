//! Common Expression Language: parser, compiler (name and function resolution,
//! done once per policy load) and evaluator, with the extension libraries that
//! Cerbos enables.
//!
//! ```text
//! source --parse--> ast::Expr --compile(HostScope)--> Program --eval(Activation)--> Value
//! ```

pub(crate) mod ast;
pub(crate) mod check;
mod compile;
mod eval;
pub(crate) mod fold;
pub(crate) mod functions;
pub(crate) mod inline;
mod json;
mod parser;
mod value;

/// Evaluator pieces the query planner's partial evaluator reuses.
pub(crate) use compile::type_ident;
pub use compile::{HostBinding, HostScope, Program, ProgramError, compile};
pub use eval::{Activation, EvalError};
pub(crate) use eval::{binary, index_value, sort_values_by_key};
pub use json::{from_json, to_json, to_output_json};
pub use parser::{ParseError, parse};
pub use value::{CelType, Key, MapValue, Opaque, Timestamp, Value};

#[cfg(test)]
mod corners;

/// Helpers for unit tests of the CEL libraries.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A host with one variable, the name it holds, in slot 0.
    pub(crate) struct TestHost(pub(crate) &'static str);

    impl HostScope for TestHost {
        fn variable(&self, name: &str) -> Option<u16> {
            (name == self.0).then_some(0)
        }
        fn select(&self, _root: &str, _field: &str) -> Option<Result<HostBinding, String>> {
            None
        }
    }

    /// Evaluates `src` with `x` bound to `x`, and `now()` at 2021-04-22T10:05:20.021-05:00.
    pub(crate) fn eval_with(src: &str, x: Value) -> Result<Value, String> {
        let expr = parse(src).map_err(|e| format!("parse: {e}"))?;
        let prog = compile(&expr, &TestHost("x")).map_err(|e| format!("compile: {e}"))?;
        let now = chrono::DateTime::parse_from_rfc3339("2021-04-22T10:05:20.021-05:00")
            .map_err(|e| e.to_string())?;
        let host = [x];
        prog.eval(&Activation::new(&host, now))
            .map_err(|e| format!("eval: {e}"))
    }

    /// Evaluates `src` with `x` = null.
    pub(crate) fn eval(src: &str) -> Result<Value, String> {
        eval_with(src, Value::Null)
    }

    /// Asserts that `src` evaluates to `true`.
    pub(crate) fn assert_true(src: &str) {
        match eval(src) {
            Ok(Value::Bool(true)) => {}
            other => panic!("{src} => {other:?}"),
        }
    }

    #[test]
    fn core_semantics() {
        for src in [
            "1 + 2 * 3 == 7",
            "1 == 1.0 && 1u == 1 && 2.5 > 2",
            "'a' + 'b' == 'ab'",
            "[1, 2] + [3] == [1, 2, 3]",
            "{'a': 1}.a == 1",
            "has({'a': 1}.a) && !has({'a': 1}.b)",
            "[1, 2, 3].all(x, x > 0)",
            "[1, 2, 3].exists(x, x == 2)",
            "[1, 2, 3].exists_one(x, x == 2)",
            "[1, 2, 3].map(x, x * 2) == [2, 4, 6]",
            "[1, 2, 3].map(x, x > 1, x * 2) == [4, 6]",
            "[1, 2, 3].filter(x, x > 1) == [2, 3]",
            "{'a': 1, 'b': 2}.all(k, v, v > 0)",
            "[1, 2, 3].transformList(i, v, i + v) == [1, 3, 5]",
            "cel.bind(y, 3, y * y) == 9",
            "[[1], [2]].map(x, x.map(y, y + 1)) == [[2], [3]]",
            "({'a': 1}.b > 0) || true",
            "!(({'a': 1}.b > 0) && false) == true",
            "(true ? 1 : 2) == 1",
            "type(1) == int && type('a') == string",
            "int('42') == 42 && double('1.5') == 1.5 && string(1.5) == '1.5'",
            "timestamp('2021-04-22T10:05:20Z') + duration('1h') > timestamp('2021-04-22T10:05:20Z')",
            "'abc'.matches('^a') && 'abc'.startsWith('ab')",
            "optional.of(1).orValue(2) == 1 && optional.none().orValue(2) == 2",
            "{'a': 1}.?b.orValue(5) == 5",
            "[{'score': 2}, {'score': 1}].sortBy(e, e.score) == [{'score': 1}, {'score': 2}]",
            "1 in [1.0, 2]",
            "'k' in {'k': 1}",
        ] {
            assert_true(src);
        }
    }

    /// Bugs the CEL specification's conformance suites found (tests/it/cel_spec.rs).
    #[test]
    fn cel_spec_findings() {
        for src in [
            // A repeated map key keeps the last value, as in Cerbos.
            "{'a': 1, 'a': 2}.a == 2",
            "[1].map(x, {x: 'a', 1: 'b'})[0][1] == 'b'",
            // Extension type names.
            "type(ip('192.168.0.1')) == net.IP && type(cidr('10.0.0.0/8')) == net.CIDR",
            "type(hierarchy('a.b')) == cerbos.lib.hierarchy",
            // optMap / optFlatMap.
            "optional.of(42).optMap(y, y + 1).value() == 43",
            "!optional.none().optMap(y, y + 1).hasValue()",
            "{'k': {'s': 'v'}}.?k.optFlatMap(k, k.?s).value() == 'v'",
            "!{'k': {}}.?k.optFlatMap(k, k.?s).hasValue()",
            // Selection and indexing on an optional value chain.
            "optional.of({'c': {'i': 'g'}}).c.i.orValue('d') == 'g'",
            "optional.of({'c': {}}).c.missing.orValue('d') == 'd'",
            "optional.of({'c': {}}).c['missing'].orValue('d') == 'd'",
            "optional.none()[0].orValue('d') == 'd'",
            "!has({}.?x.y) && has({'x': {'y': 'z'}}.?x.y)",
            "!has({'foo': optional.none()}.foo.bar)",
            // Backquoted field names.
            "{'content-type': 'json'}.`content-type` == 'json'",
            // int(duration) is nanoseconds.
            "int(duration('1h')) == 3600000000000",
        ] {
            assert_true(src);
        }
        for src in [
            "timestamp('0000-01-01T00:00:00Z')",
            "timestamp(253402300800)",
            "timestamp(-62135596801)",
            "timestamp('9999-12-31T23:59:59.999999999Z') + duration('1ns')",
            "timestamp('0001-01-01T00:00:00Z') - duration('1ns')",
            "timestamp('9999-12-31T23:59:59Z') - timestamp('0001-01-01T00:00:00Z')",
            "duration('2562047h') + duration('1h')",
            "-(duration('-2562047h') - duration('47m16.854775808s'))",
            "duration(5)",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
        assert!(
            eval("timestamp('9999-12-31T23:59:59Z') + duration('1s')")
                .unwrap_err()
                .contains("timestamp overflow")
        );
    }

    #[test]
    fn errors() {
        assert!(eval("{'a': 1}.b").unwrap_err().contains("no such key: b"));
        assert!(eval("1 / 0").unwrap_err().contains("division by zero"));
        assert!(eval("1 + 1.0").is_err());
        assert!(
            eval("nope(1)")
                .unwrap_err()
                .contains("undeclared reference")
        );
        assert!(
            eval("y + 1")
                .unwrap_err()
                .contains("undeclared reference to 'y'")
        );
        assert!(eval("[1, 'a'].all(x, x > 0)").is_err());
        assert!(eval("[0, 'a'].all(x, x > 0)").is_ok_and(|v| v.as_bool() == Some(false)));
    }
}
