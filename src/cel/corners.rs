//! Issue 11, class 5: CEL evaluation corners where Gatehouse differed from Cerbos 0.55.
//! Every answer below was taken from the real Cerbos 0.55 (`cerbos repl`); Gatehouse must
//! give the same value, or an error with the same text. (Unit tests of the CEL library:
//! parse, compile and evaluate, nothing else of Gatehouse.)

use chrono::DateTime;

use super::testing::TestHost;
use super::{Activation, Program, Value, compile, from_json, parse};

/// Corners where Gatehouse deliberately decides differently from Cerbos 0.55, with the
/// reason: `(expression, reason)`. The test checks that each still differs.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// `(expression, Cerbos's answer)`: `value: <CEL expression>` or `error: <message>`.
const CASES: &[(&str, &str)] = &[
    // Timestamp accessors without a time zone read UTC.
    (
        "timestamp('2021-04-20T10:00:20.021-05:00').getHours()",
        "value: 15",
    ),
    (
        "timestamp('2021-12-31T22:30:00-05:00').getFullYear()",
        "value: 2022",
    ),
    (
        "timestamp('2021-04-20T23:30:00+05:30').getHours()",
        "value: 18",
    ),
    // Numbers.
    ("R.huge == 9007199254740993", "value: true"),
    ("R.huge == 9007199254740992", "value: true"),
    ("int(duration('1h'))", "value: 3600000000000"),
    ("duration('2562047h')", "value: duration('2562047h')"),
    (
        "duration('-2562047h') - duration('1h')",
        "error: integer overflow",
    ),
    (
        "timestamp('9999-12-31T23:59:59Z') + duration('1s')",
        "error: timestamp overflow",
    ),
    (
        "timestamp('0001-01-01T00:00:00Z') - timestamp('9999-12-31T23:59:59Z')",
        "error: integer overflow",
    ),
    (
        "string(timestamp('2021-04-20T10:00:20Z') - timestamp('2023-06-10T00:00:00.000000001Z'))",
        "value: '-67442380s'",
    ),
    (
        "string(duration('-0.000000001s'))",
        "value: '-0.000000001s'",
    ),
    (
        "string(duration('0.1s') + duration('0.2s'))",
        "value: '0.3s'",
    ),
    // Map literals with a repeated key keep the last value.
    ("{'a': 1, 'a': 2}.a", "value: 2"),
    ("{true: 1, false: 2, true: 3}[true]", "value: 3"),
    ("[1].map(x, {x: 'a', 1: 'b'})[0][1]", "value: 'b'"),
    // cel.bind is lazy.
    ("cel.bind(x, 1/0, true)", "value: true"),
    ("cel.bind(x, 1/0, x > 0 || true)", "value: true"),
    ("cel.bind(x, [1, 2].map(y, 1/0), 2)", "value: 2"),
    // The parser drops even runs of `!` and `-`.
    ("!!1", "value: 1"),
    ("---1", "value: -1"),
    ("-(-1)", "value: 1"),
    // Error texts.
    (
        "int('')",
        "error: type conversion error from 'string' to 'int'",
    ),
    (
        "int('1.5')",
        "error: type conversion error from 'string' to 'int'",
    ),
    (
        "double('x')",
        "error: type conversion error from 'string' to 'double'",
    ),
    (
        "bool('x')",
        "error: type conversion error from 'string' to 'bool'",
    ),
    ("uint(-1)", "error: unsigned integer overflow"),
    ("uint(1e30)", "error: unsigned integer overflow"),
    ("int(9223372036854775807.0)", "error: integer overflow"),
    ("int(18446744073709551615u)", "error: integer overflow"),
    ("9223372036854775807 + 1", "error: integer overflow"),
    (
        "18446744073709551615u + 1u",
        "error: unsigned integer overflow",
    ),
    ("1u - 2u", "error: unsigned integer overflow"),
    ("[1, 2][5]", "error: index out of bounds: 5"),
    ("'abc'.substring(5)", "error: index out of range: 5"),
    ("1 % 0", "error: modulus by zero"),
    // Go's base64 error offsets (of the unpadded decoder cel-go falls back to).
    (
        "base64.decode('a')",
        "error: illegal base64 data at input byte 0",
    ),
    (
        "base64.decode('ünï')",
        "error: illegal base64 data at input byte 0",
    ),
    (
        "base64.decode('1h30m')",
        "error: illegal base64 data at input byte 4",
    ),
    (
        "base64.decode('YQ=')",
        "error: illegal base64 data at input byte 2",
    ),
    (
        "base64.decode('YWJj\\nZ')",
        "error: illegal base64 data at input byte 5",
    ),
    (
        "base64.decode('YW=j')",
        "error: illegal base64 data at input byte 2",
    ),
    (
        "base64.decode('YWJjZA==x')",
        "error: illegal base64 data at input byte 6",
    ),
    // The global set functions are non-strict: a failed argument is `no such overload`;
    // their receiver forms are strict.
    (
        "intersect([1, 2].slice(2, 1), [1])",
        "error: no such overload",
    ),
    (
        "[1].intersect([1, 2].slice(2, 1))",
        "error: cannot slice(2, 1), start index must be less than or equal to end index",
    ),
    ("hasIntersection([1], [[1][5]])", "error: no such overload"),
    ("except([1], [[1][5]])", "error: no such overload"),
    ("isSubset([1 / 0], [1])", "error: no such overload"),
    ("is_subset([1], [1 / 0])", "error: no such overload"),
    ("[1].isSubset([1 / 0])", "error: division by zero"),
    // Path functions.
    ("pathHasPrefix('/a/b.txt', '/a/b.txt')", "value: true"),
    (
        "pathHasPrefix('/a/b.txt', '')",
        "error: failed to determine relative path of /a/b.txt: Rel: can't make /a/b.txt relative to .",
    ),
    ("joinPath(['', ''])", "value: '.'"),
    (r"basePath('C:\\a\\b.txt')", "value: 'b.txt'"),
    (r"volumeName('C:\\a')", "value: 'C:'"),
    // timestamp(string): RFC 3339's grammar, then Go's stricter time.Parse.
    (
        "timestamp('2021-04-20T10:00:20Z'.lowerAscii())",
        "error: type conversion error from 'string' to 'google.protobuf.Timestamp'",
    ),
    (
        "timestamp('2021-04-20t10:00:20Z' + '')",
        "error: type conversion error from 'string' to 'google.protobuf.Timestamp'",
    ),
    (
        "timestamp('2021-04-20T10:00:20z' + '')",
        "error: type conversion error from 'string' to 'google.protobuf.Timestamp'",
    ),
    (
        "timestamp('2021-04-20 10:00:20Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20 10:00:20Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20+00:00' + '')",
        "value: timestamp(\"2021-04-20T10:00:20Z\")",
    ),
    (
        "timestamp('2021-04-20T10:00:20-00:00' + '')",
        "value: timestamp(\"2021-04-20T10:00:20Z\")",
    ),
    (
        "timestamp('2021-04-20T10:00:20.5Z' + '')",
        "value: timestamp(\"2021-04-20T10:00:20.5Z\")",
    ),
    (
        "timestamp('2021-04-20T10:00:20,5Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20,5Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20.123456789123Z' + '')",
        "value: timestamp(\"2021-04-20T10:00:20.123456789Z\")",
    ),
    (
        "timestamp('2021-04-20T24:00:00Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T24:00:00Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:60Z' + '')",
        "error: type conversion error from 'string' to 'google.protobuf.Timestamp'",
    ),
    (
        "timestamp('2021-04-20T10:60:00Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:60:00Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20+24:00' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20+24:00\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20+23:59' + '')",
        "value: timestamp(\"2021-04-20T10:00:20+23:59\")",
    ),
    (
        "timestamp('2021-04-20T10:00:20+01:60' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20+01:60\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20+0100' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20+0100\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20+01' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20+01\"",
    ),
    (
        "timestamp('2021-4-20T10:00:20Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-4-20T10:00:20Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20.Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20.Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00Z\"",
    ),
    (
        "timestamp('2021-02-30T10:00:20Z' + '')",
        "error: type conversion error from 'string' to 'google.protobuf.Timestamp'",
    ),
    (
        "timestamp('2020-02-29T10:00:20Z' + '')",
        "value: timestamp(\"2020-02-29T10:00:20Z\")",
    ),
    (
        "timestamp('0000-01-01T00:00:00Z' + '')",
        "error: timestamp overflow",
    ),
    (
        "timestamp('+2021-04-20T10:00:20Z' + '')",
        "error: invalid RFC 3339 timestamp \"+2021-04-20T10:00:20Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20Z ' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20Z \"",
    ),
    (
        "timestamp(' 2021-04-20T10:00:20Z' + '')",
        "error: invalid RFC 3339 timestamp \" 2021-04-20T10:00:20Z\"",
    ),
    (
        "timestamp('2021-04-20T1:00:20Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T1:00:20Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20ZZ' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20ZZ\"",
    ),
    (
        "timestamp('20210-04-20T10:00:20Z' + '')",
        "error: invalid RFC 3339 timestamp \"20210-04-20T10:00:20Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20.1234567891Z' + '')",
        "value: timestamp(\"2021-04-20T10:00:20.123456789Z\")",
    ),
    (
        "timestamp('2021-04-20T10:00:20+05:30' + '')",
        "value: timestamp(\"2021-04-20T10:00:20+05:30\")",
    ),
    (
        "timestamp('2021-04-20T10:00:20-23:59' + '')",
        "value: timestamp(\"2021-04-20T10:00:20-23:59\")",
    ),
    (
        "timestamp('2021-04-20T10:00:20+99:00' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20+99:00\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20.٣Z' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20.٣Z\"",
    ),
    (
        "timestamp('2021-04-20T10:00:20Ｚ' + '')",
        "error: invalid RFC 3339 timestamp \"2021-04-20T10:00:20Ｚ\"",
    ),
    (
        "timestamp('' + '')",
        "error: invalid RFC 3339 timestamp \"\"",
    ),
    // Type names.
    (
        "type(hierarchy('a.b')) == cerbos.lib.hierarchy",
        "value: true",
    ),
    ("type(ip('192.168.0.1')) == net.IP", "value: true"),
];

fn program(src: &str) -> Result<Program, String> {
    let ast = parse(src).map_err(|e| e.to_string())?;
    compile(&ast, &TestHost("R")).map_err(|e| e.to_string())
}

fn eval(src: &str) -> Result<Value, String> {
    let now = DateTime::parse_from_rfc3339("2021-04-22T10:05:20.021-05:00").expect("now");
    let r: serde_json::Value = serde_json::from_str(r#"{"huge": 9007199254740993}"#).expect("json");
    // `R`: a JSON number beyond 2^53.
    let host = [from_json(&r)];
    program(src)?
        .eval(&Activation::new(&host, now))
        .map_err(|e| e.message().to_string())
}

/// Whether Gatehouse gives Cerbos's answer; the detail when it does not.
fn agrees(src: &str, answer: &str) -> Result<(), String> {
    let got = eval(src);
    if let Some(msg) = answer.strip_prefix("error: ") {
        return match got {
            Err(e) if e == msg => Ok(()),
            other => Err(format!("want error {msg:?}, got {other:?}")),
        };
    }
    let want_src = answer.strip_prefix("value: ").expect("value: or error:");
    let want = eval(want_src).map_err(|e| format!("answer {want_src}: {e}"))?;
    match got {
        Ok(v) if v.cel_eq(&want) && v.cel_type() == want.cel_type() => Ok(()),
        other => Err(format!("want {want:?}, got {other:?}")),
    }
}

#[test]
fn issue_11_cel_corners_as_cerbos() {
    let mut failures = Vec::new();
    let mut stale = Vec::new();
    for (src, answer) in CASES {
        let known = KNOWN_DIFFERENCES.iter().any(|(k, _)| k == src);
        match (agrees(src, answer), known) {
            (Err(e), false) => failures.push(format!("{src}: {e}")),
            (Ok(()), true) => stale.push(*src),
            _ => {}
        }
    }
    for (k, _) in KNOWN_DIFFERENCES {
        assert!(
            CASES.iter().any(|(src, _)| src == k),
            "KNOWN_DIFFERENCES: `{k}` is not a case"
        );
    }
    assert!(
        failures.is_empty(),
        "differences from Cerbos: {failures:#?}"
    );
    assert!(
        stale.is_empty(),
        "known differences that now agree with Cerbos: {stale:?}"
    );
}

/// The path functions over a table of edge cases (empty paths, `.`, `..`, trailing
/// separators, relative and absolute mixes, drive letters, UNC paths), with the answers of
/// the real Cerbos 0.55 recorded by `tests/diff/repl_answers.py` from
/// `tests/data/cel_answers/path_functions.txt`.
#[test]
fn issue_11_path_functions_table_as_cerbos() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cel_answers/path_functions.json");
    let text = std::fs::read_to_string(&path).expect("path_functions.json");
    let cases: Vec<(String, String)> = serde_json::from_str(&text).expect("pairs");
    assert!(cases.len() > 3000, "{} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(src, answer)| agrees(src, answer).err().map(|e| format!("{src}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} differences from Cerbos: {failures:#?}",
        failures.len()
    );
}
