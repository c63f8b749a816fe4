//! Runs the CEL language's own conformance suites (`conformance/cel-spec/`, google/cel-spec's
//! `tests/simple/testdata/*.textproto`) through Gatehouse's CEL parser, compiler and evaluator.
//!
//! The text protos are parsed with a real protobuf text-format parser (`prost-reflect`) over
//! the `.proto` files shipped beside them (compiled with `protox`). Each test is evaluated with
//! its bindings and compared with the wanted value (exactly: `1`, `1u` and `1.0` differ; NaN
//! matches NaN) or the wanted error (any parse, compile or evaluation error matches; cel-spec
//! does not fix error texts).
//!
//! `tests/data/cel-spec/exclusions.txt` lists what does not apply to a Cerbos engine (whole
//! files, sections or tests, each with its reason); `tests/data/cel-spec/known_failures.txt`
//! lists the applicable tests that fail, each with its reason; `tests/data/cel-spec/
//! cerbos_answers.txt` gives Cerbos 0.55's answer, which wins, where it differs from the
//! specification's. The test fails on a failure
//! that is not listed and on a listed failure that now passes, so the pass count never drops
//! unnoticed. It prints `cel-spec: N passed, M failed, K excluded`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta};
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, Value as Pv};

use gatehouse::cel::{
    Activation, CelType, HostBinding, HostScope, Key, MapValue, Value, compile, parse,
};

use crate::util::corpus_dir;

/// `now()` for every test (cel-spec tests never depend on the clock).
const NOW: &str = "2021-04-22T10:05:20.021-05:00";

/// The binding names of one test, in activation-slot order.
struct Host<'a>(Vec<&'a str>);

impl HostScope for Host<'_> {
    fn variable(&self, name: &str) -> Option<u16> {
        self.0.iter().position(|n| *n == name).map(|i| i as u16)
    }

    fn select(&self, _root: &str, _field: &str) -> Option<Result<HostBinding, String>> {
        None
    }
}

/// What a test wants.
#[derive(Debug)]
enum Want {
    Value(Value),
    Error,
}

/// A list of `key | reason` lines (`key | answer | reason` in `cerbos_answers.txt`), the key
/// `file`, `file/section` or `file/section/test`.
struct Listing {
    entries: Vec<(String, String)>,
}

impl Listing {
    fn load(path: &Path) -> Listing {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, reason) = line
                .split_once(" | ")
                .unwrap_or_else(|| panic!("{}:{}: expected `key | reason`", path.display(), n + 1));
            assert!(
                !reason.trim().is_empty(),
                "{}:{}: an entry needs a reason",
                path.display(),
                n + 1
            );
            entries.push((key.trim().to_string(), reason.trim().to_string()));
        }
        Listing { entries }
    }

    /// The entry covering `file/section/test`, if any: its key and the rest of its line.
    fn find(&self, file: &str, section: &str, test: &str) -> Option<(&str, &str)> {
        let keys = [
            file.to_string(),
            format!("{file}/{section}"),
            format!("{file}/{section}/{test}"),
        ];
        self.entries
            .iter()
            .find(|(k, _)| keys.contains(k))
            .map(|(k, rest)| (k.as_str(), rest.as_str()))
    }
}

fn field<'a>(msg: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, Pv>> {
    msg.has_field_by_name(name)
        .then(|| msg.get_field_by_name(name))
        .flatten()
}

fn str_field(msg: &DynamicMessage, name: &str) -> String {
    field(msg, name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn message(v: &Pv) -> Result<&DynamicMessage, String> {
    v.as_message()
        .ok_or_else(|| format!("expected a message, got {v:?}"))
}

/// Converts a `cel.expr.Value` into a Gatehouse value.
fn cel_value(pool: &DescriptorPool, msg: &DynamicMessage) -> Result<Value, String> {
    let Some((fd, v)) = msg.fields().next() else {
        return Err("empty cel.expr.Value".into());
    };
    Ok(match (fd.name(), v) {
        ("null_value", _) => Value::Null,
        ("bool_value", Pv::Bool(b)) => Value::Bool(*b),
        ("int64_value", Pv::I64(i)) => Value::Int(*i),
        ("uint64_value", Pv::U64(u)) => Value::Uint(*u),
        ("double_value", Pv::F64(d)) => Value::Double(*d),
        ("string_value", Pv::String(s)) => Value::string(s.as_str()),
        ("bytes_value", Pv::Bytes(b)) => Value::Bytes(Arc::from(b.as_ref())),
        ("list_value", Pv::Message(l)) => Value::list(match field(l, "values") {
            Some(vs) => vs
                .as_list()
                .unwrap_or_default()
                .iter()
                .map(|v| cel_value(pool, message(v)?))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        }),
        ("map_value", Pv::Message(m)) => {
            let mut out = MapValue::new();
            if let Some(entries) = field(m, "entries") {
                for e in entries.as_list().unwrap_or_default() {
                    let e = message(e)?;
                    let k = field(e, "key").ok_or("map entry without a key")?;
                    let k = cel_value(pool, message(&k)?)?;
                    let v = field(e, "value").ok_or("map entry without a value")?;
                    let v = cel_value(pool, message(&v)?)?;
                    let key = match &k {
                        Value::Double(_) => None,
                        k => Key::from_value(k),
                    }
                    .ok_or_else(|| format!("unsupported map key {k:?}"))?;
                    out.insert(key, v);
                }
            }
            Value::map(out)
        }
        ("type_value", Pv::String(t)) => Value::Type(type_named(t)?),
        ("object_value", Pv::Message(any)) => any_value(pool, any)?,
        (name, v) => return Err(format!("unsupported cel.expr.Value field {name}: {v:?}")),
    })
}

fn type_named(name: &str) -> Result<CelType, String> {
    Ok(match name {
        "null_type" => CelType::Null,
        "bool" => CelType::Bool,
        "int" => CelType::Int,
        "uint" => CelType::Uint,
        "double" => CelType::Double,
        "string" => CelType::String,
        "bytes" => CelType::Bytes,
        "list" => CelType::List,
        "map" => CelType::Map,
        "google.protobuf.Timestamp" => CelType::Timestamp,
        "google.protobuf.Duration" => CelType::Duration,
        "type" => CelType::Type,
        "optional_type" => CelType::Optional,
        other => return Err(format!("unsupported type value {other}")),
    })
}

/// Converts a `google.protobuf.Any` holding a well-known type into a Gatehouse value.
fn any_value(pool: &DescriptorPool, any: &DynamicMessage) -> Result<Value, String> {
    let url = str_field(any, "type_url");
    let name = url.rsplit('/').next().unwrap_or_default();
    let desc = pool
        .get_message_by_name(name)
        .ok_or_else(|| format!("unknown message type {url}"))?;
    let bytes = field(any, "value")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let msg = DynamicMessage::decode(desc, bytes).map_err(|e| e.to_string())?;
    let num = |name: &str| field(&msg, name).map(|v| v.into_owned());
    match name {
        "google.protobuf.Duration" | "google.protobuf.Timestamp" => {
            let secs = num("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
            let nanos = num("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
            if name == "google.protobuf.Duration" {
                TimeDelta::new(secs, 0)
                    .and_then(|d| d.checked_add(&TimeDelta::nanoseconds(nanos.into())))
                    .map(Value::Duration)
                    .ok_or_else(|| "duration out of range".into())
            } else {
                DateTime::from_timestamp(secs, nanos as u32)
                    .map(|t| Value::Timestamp(t.fixed_offset()))
                    .ok_or_else(|| "timestamp out of range".into())
            }
        }
        other => Err(format!("proto message {other}")),
    }
}

/// Strict value equality of the conformance suites: types must match, NaN matches NaN,
/// maps compare regardless of order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            let y: HashMap<&Key, &Value> = y.iter().collect();
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Optional(x), Value::Optional(y)) => match (x, y) {
            (Some(p), Some(q)) => same(p, q),
            (None, None) => true,
            _ => false,
        },
        (Value::Int(_), Value::Int(_))
        | (Value::Uint(_), Value::Uint(_))
        | (Value::Null, Value::Null)
        | (Value::Bool(_), Value::Bool(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bytes(_), Value::Bytes(_))
        | (Value::Timestamp(_), Value::Timestamp(_))
        | (Value::Duration(_), Value::Duration(_))
        | (Value::Type(_), Value::Type(_))
        | (Value::Opaque(_), Value::Opaque(_)) => a.cel_eq(b),
        _ => false,
    }
}

/// Reads what a `SimpleTest` wants.
fn want(pool: &DescriptorPool, test: &DynamicMessage) -> Result<Want, String> {
    if let Some(v) = field(test, "value") {
        return cel_value(pool, message(&v)?).map(Want::Value);
    }
    if let Some(t) = field(test, "typed_result") {
        let t = message(&t)?;
        return match field(t, "result") {
            Some(v) => cel_value(pool, message(&v)?).map(Want::Value),
            None => Err("typed_result without a result".into()),
        };
    }
    if field(test, "eval_error").is_some() || field(test, "any_eval_errors").is_some() {
        return Ok(Want::Error);
    }
    if field(test, "unknown").is_some() || field(test, "any_unknowns").is_some() {
        return Err("unknown results".into());
    }
    Ok(Want::Value(Value::Bool(true)))
}

/// Reads an answer of `cerbos_answers.txt`: `error` or a CEL expression for the value.
fn cerbos_want(answer: &str) -> Result<Want, String> {
    if answer == "error" {
        return Ok(Want::Error);
    }
    let now = DateTime::parse_from_rfc3339(NOW).map_err(|e| e.to_string())?;
    let ast = parse(answer).map_err(|e| format!("answer {answer}: {e}"))?;
    let prog = compile(&ast, &Host(Vec::new())).map_err(|e| format!("answer {answer}: {e}"))?;
    prog.eval(&Activation::new(&[], now))
        .map(Want::Value)
        .map_err(|e| format!("answer {answer}: {e}"))
}

/// Evaluates one test; `Ok(())` when it passes, else what went wrong.
fn run_test(
    pool: &DescriptorPool,
    test: &DynamicMessage,
    cerbos: Option<&str>,
) -> Result<(), String> {
    let want = match cerbos {
        Some(answer) => cerbos_want(answer)?,
        None => want(pool, test)?,
    };
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut bindings = BTreeMap::new();
    if let Some(b) = field(test, "bindings") {
        for (k, v) in b.as_map().into_iter().flatten() {
            let MapKey::String(name) = k else {
                return Err(format!("binding key {k:?}"));
            };
            let ev = message(v)?;
            let value = field(ev, "value").ok_or("binding without a value")?;
            bindings.insert(name.clone(), cel_value(pool, message(&value)?)?);
        }
    }
    for (name, value) in &bindings {
        names.push(name.as_str());
        values.push(value.clone());
    }
    let expr = str_field(test, "expr");
    let now = DateTime::parse_from_rfc3339(NOW).map_err(|e| e.to_string())?;
    let got = parse(&expr)
        .map_err(|e| format!("parse error: {e}"))
        .and_then(|ast| compile(&ast, &Host(names)).map_err(|e| format!("compile error: {e}")))
        .and_then(|prog| {
            prog.eval(&Activation::new(&values, now))
                .map_err(|e| format!("eval error: {e}"))
        });
    match (want, got) {
        (Want::Value(w), Ok(g)) if same(&w, &g) => Ok(()),
        (Want::Value(w), Ok(g)) => Err(format!("want {w:?}, got {g:?}")),
        (Want::Value(w), Err(e)) => Err(format!("want {w:?}, got {e}")),
        (Want::Error, Err(_)) => Ok(()),
        (Want::Error, Ok(g)) => Err(format!("want an error, got {g:?}")),
    }
}

#[test]
fn cel_spec_conformance() {
    let Some(corpus) = corpus_dir("cel-spec") else {
        return;
    };
    let root = corpus.join("cel-spec");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cel-spec");
    let exclusions = Listing::load(&data.join("exclusions.txt"));
    let known = Listing::load(&data.join("known_failures.txt"));
    let answers = Listing::load(&data.join("cerbos_answers.txt"));

    let protos = root.join("proto");
    let mut files = Vec::new();
    for entry in walk(&protos) {
        if entry.extension().is_some_and(|e| e == "proto") {
            files.push(
                entry
                    .strip_prefix(&protos)
                    .expect("under proto/")
                    .to_path_buf(),
            );
        }
    }
    files.sort();
    let pool = protox::Compiler::new([&protos])
        .and_then(|mut c| {
            c.include_imports(true).open_files(&files)?;
            Ok(c.descriptor_pool())
        })
        .unwrap_or_else(|e| panic!("cel-spec protos: {e}"));
    let file_desc = pool
        .get_message_by_name("cel.expr.conformance.test.SimpleTestFile")
        .expect("SimpleTestFile");

    let testdata = root.join("tests/simple/testdata");
    let mut suites: Vec<_> = std::fs::read_dir(&testdata)
        .unwrap_or_else(|e| panic!("{}: {e}", testdata.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "textproto"))
        .collect();
    suites.sort();

    // CEL_SPEC_TRACE=1 prints every test that runs, with its outcome.
    let trace = std::env::var_os("CEL_SPEC_TRACE").is_some();
    let (mut passed, mut failed, mut excluded) = (0usize, 0usize, 0usize);
    let mut unexpected = Vec::new();
    let mut used_known = Vec::new();
    let mut used_excl = Vec::new();
    let mut used_answers = Vec::new();
    let mut with_cerbos_answer = 0usize;
    let mut stale = Vec::new();
    for path in &suites {
        let file = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name");
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let suite = DynamicMessage::parse_text_format(file_desc.clone(), &text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sections = field(&suite, "section").map(|v| v.into_owned());
        for section in sections
            .iter()
            .flat_map(|s| s.as_list().unwrap_or_default())
        {
            let section = message(section).expect("section");
            let sname = str_field(section, "name");
            let tests = field(section, "test").map(|v| v.into_owned());
            for test in tests.iter().flat_map(|t| t.as_list().unwrap_or_default()) {
                let test = message(test).expect("test");
                let tname = str_field(test, "name");
                let id = format!("{file}/{sname}/{tname}");
                if let Some((k, _)) = exclusions.find(file, &sname, &tname) {
                    excluded += 1;
                    used_excl.push(k.to_string());
                    continue;
                }
                let cerbos = answers.find(file, &sname, &tname).map(|(k, rest)| {
                    used_answers.push(k.to_string());
                    let (answer, reason) = rest.split_once(" | ").unwrap_or_else(|| {
                        panic!("cerbos_answers.txt: `{k}` needs `answer | reason`")
                    });
                    assert!(
                        !reason.trim().is_empty(),
                        "cerbos_answers.txt: `{k}` needs a reason"
                    );
                    answer.trim()
                });
                if cerbos.is_some() {
                    with_cerbos_answer += 1;
                }
                let result = run_test(&pool, test, cerbos);
                if trace {
                    let status = if result.is_ok() { "PASS" } else { "FAIL" };
                    println!("cel-spec trace {status} {id}: {}", str_field(test, "expr"));
                }
                let listed = known.find(file, &sname, &tname).map(|(k, _)| k);
                if let Some(k) = listed {
                    used_known.push(k.to_string());
                }
                match (result, listed) {
                    (Ok(()), None) => passed += 1,
                    (Ok(()), Some(_)) => {
                        passed += 1;
                        stale.push(id);
                    }
                    (Err(_), Some(_)) => failed += 1,
                    (Err(e), None) => {
                        failed += 1;
                        println!("cel-spec FAIL {id}: {} => {e}", str_field(test, "expr"));
                        unexpected.push(id);
                    }
                }
            }
        }
    }
    for id in &stale {
        println!("cel-spec: listed failure now passes, remove it from known_failures.txt: {id}");
    }
    println!("cel-spec: {passed} passed, {failed} failed, {excluded} excluded");
    let applicable = passed + failed;
    println!(
        "cel-spec: {:.1}% of {applicable} applicable tests pass; {with_cerbos_answer} of them \
         checked against Cerbos's answer instead of the specification's",
        100.0 * passed as f64 / applicable.max(1) as f64
    );
    for (what, listing, used) in [
        ("exclusions.txt", &exclusions, &used_excl),
        ("known_failures.txt", &known, &used_known),
        ("cerbos_answers.txt", &answers, &used_answers),
    ] {
        for (k, _) in &listing.entries {
            assert!(used.contains(k), "{what}: `{k}` matches no test");
        }
    }
    assert!(
        unexpected.is_empty(),
        "cel-spec tests failing that known_failures.txt does not list: {unexpected:#?}"
    );
    assert!(
        stale.is_empty(),
        "known_failures.txt lists tests that now pass: {stale:#?}"
    );
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
