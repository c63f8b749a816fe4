//! Reporters: Cerbos's JSON shape, and human-readable tree and list views.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json, json};

use super::compat::{proto_value, protojson};
use super::results::{
    Details, Outcome, OutputFailureKind, OutputValue, SuiteResult, Summary, TestResults, Verdict,
};
use super::run::SKIP_REASON_NAME;

// === JSON ===

/// The results as Cerbos prints them with `-o json` (`cerbos.policy.v1.TestResults` in
/// protojson form: empty fields left out, output values with sorted keys and numbers as
/// doubles).
pub fn render_json(results: &TestResults) -> Json {
    let mut out = Map::new();
    out.insert(
        "suites".into(),
        Json::Array(results.suites.iter().map(suite_json).collect()),
    );
    out.insert("summary".into(), summary_json(&results.summary));
    Json::Object(out)
}

fn summary_json(s: &Summary) -> Json {
    let mut out = Map::new();
    if s.overall_result != Verdict::Unspecified {
        out.insert("overallResult".into(), json!(s.overall_result.as_str()));
    }
    if s.tests_count > 0 {
        out.insert("testsCount".into(), json!(s.tests_count));
    }
    if !s.result_counts.is_empty() {
        let counts: Vec<Json> = s
            .result_counts
            .iter()
            .map(|t| json!({"result": t.result.as_str(), "count": t.count}))
            .collect();
        out.insert("resultCounts".into(), Json::Array(counts));
    }
    Json::Object(out)
}

fn suite_json(s: &SuiteResult) -> Json {
    let mut out = Map::new();
    out.insert("file".into(), json!(s.file));
    out.insert("name".into(), json!(s.name));
    out.insert("summary".into(), summary_json(&s.summary));
    if !s.error.is_empty() {
        out.insert("error".into(), json!(s.error));
    }
    if !s.test_cases.is_empty() {
        let cases: Vec<Json> = s
            .test_cases
            .iter()
            .map(|c| {
                let principals: Vec<Json> = c
                    .principals
                    .iter()
                    .map(|p| {
                        let resources: Vec<Json> = p
                            .resources
                            .iter()
                            .map(|r| {
                                let actions: Vec<Json> = r
                                    .actions
                                    .iter()
                                    .map(|a| json!({"name": a.name, "details": details_json(&a.details)}))
                                    .collect();
                                json!({"name": r.name, "actions": actions})
                            })
                            .collect();
                        json!({"name": p.name, "resources": resources})
                    })
                    .collect();
                json!({"name": c.name, "principals": principals})
            })
            .collect();
        out.insert("testCases".into(), Json::Array(cases));
    }
    if !s.description.is_empty() {
        out.insert("description".into(), json!(s.description));
    }
    if !s.skip_reason.is_empty() {
        out.insert("skipReason".into(), json!(s.skip_reason));
    }
    Json::Object(out)
}

fn output_json(o: &OutputValue) -> Json {
    let mut out = Map::new();
    out.insert("src".into(), json!(o.src));
    match &o.value {
        Ok(v) => {
            out.insert("val".into(), proto_value(v));
            out.insert("action".into(), json!(o.action));
        }
        Err(e) => {
            out.insert("action".into(), json!(o.action));
            out.insert("error".into(), json!(e));
        }
    }
    Json::Object(out)
}

fn details_json(d: &Details) -> Json {
    let mut out = Map::new();
    out.insert("result".into(), json!(d.result.as_str()));
    match &d.outcome {
        Outcome::Success { effect, outputs } => {
            let mut s = Map::new();
            s.insert("effect".into(), json!(effect.as_str()));
            if !outputs.is_empty() {
                s.insert(
                    "outputs".into(),
                    Json::Array(outputs.iter().map(output_json).collect()),
                );
            }
            out.insert("success".into(), Json::Object(s));
        }
        Outcome::Failure {
            expected,
            actual,
            outputs,
        } => {
            let mut f = Map::new();
            f.insert("expected".into(), json!(expected.as_str()));
            f.insert("actual".into(), json!(actual.as_str()));
            if !outputs.is_empty() {
                let outputs: Vec<Json> = outputs
                    .iter()
                    .map(|o| {
                        let (key, body) = match &o.kind {
                            OutputFailureKind::Mismatched { expected, actual } => (
                                "mismatched",
                                json!({"expected": proto_value(expected), "actual": proto_value(actual)}),
                            ),
                            OutputFailureKind::Missing { expected } => {
                                ("missing", json!({"expected": proto_value(expected)}))
                            }
                            OutputFailureKind::Errored { expected, error } => {
                                ("errored", json!({"expected": proto_value(expected), "error": error}))
                            }
                        };
                        json!({"src": o.src, key: body})
                    })
                    .collect();
                f.insert("outputs".into(), Json::Array(outputs));
            }
            out.insert("failure".into(), Json::Object(f));
        }
        Outcome::Error(e) => {
            out.insert("error".into(), json!(e));
        }
        Outcome::Skipped(reason) => {
            if !reason.is_empty() {
                out.insert("skipReason".into(), json!(reason));
            }
        }
    }
    if !d.engine_trace.is_empty() {
        let trace: Vec<Json> = d
            .engine_trace
            .iter()
            .map(|line| json!({"event": {"message": line}}))
            .collect();
        out.insert("engineTrace".into(), Json::Array(trace));
    }
    Json::Object(out)
}

// === Tree and list ===

/// ANSI styles used when colour is on.
#[derive(Clone, Copy)]
enum Style {
    Header,
    Suite,
    File,
    Passed,
    Failed,
    Errored,
    Skipped,
    Dim,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Header => "\x1b[1;4m",
            Style::Suite => "\x1b[1;36m",
            Style::File => "\x1b[2m",
            Style::Passed => "\x1b[32m",
            Style::Failed => "\x1b[31m",
            Style::Errored => "\x1b[1;31m",
            Style::Skipped => "\x1b[33m",
            Style::Dim => "\x1b[2m",
        }
    }
}

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}\x1b[0m", style.code())
        } else {
            text.to_owned()
        }
    }

    /// How a verdict is shown: its style and label.
    fn label(v: Verdict) -> (Style, &'static str) {
        match v {
            Verdict::Passed => (Style::Passed, "OK"),
            Verdict::Failed => (Style::Failed, "FAILED"),
            Verdict::Errored => (Style::Errored, "ERROR"),
            Verdict::Skipped => (Style::Skipped, "SKIPPED"),
            _ => (Style::Dim, "UNSPECIFIED"),
        }
    }

    fn verdict(&self, v: Verdict) -> String {
        let (style, label) = Self::label(v);
        self.paint(style, &format!("[{label}]"))
    }

    fn tally(&self, s: &Summary) -> String {
        let mut out = String::new();
        for t in &s.result_counts {
            let (style, label) = Self::label(t.result);
            out.push(' ');
            out.push_str(&self.paint(style, &format!("[{} {label}]", t.count)));
        }
        out
    }
}

/// The results as a tree (Cerbos's default `tree` output): failures, errors and skipped
/// tests with their details; passing tests too when `verbose` (with their outputs and,
/// when recorded, the engine trace).
pub fn render_tree(results: &TestResults, verbose: bool, color: bool) -> String {
    render(results, verbose, color, draw_tree)
}

/// The results as an indented list (Cerbos's `list` output), with the same content as
/// [`render_tree`].
pub fn render_list(results: &TestResults, verbose: bool, color: bool) -> String {
    render(results, verbose, color, |items| {
        items
            .iter()
            .map(|(level, text)| format!("{}{text}\n", "  ".repeat(*level)))
            .collect()
    })
}

fn render(
    results: &TestResults,
    verbose: bool,
    color: bool,
    draw: impl Fn(&[(usize, String)]) -> String,
) -> String {
    let p = Painter { color };
    let mut items = Vec::new();
    for suite in &results.suites {
        add_suite(&mut items, &p, suite, verbose);
    }
    let mut out = p.paint(Style::Header, "Test results");
    out.push('\n');
    out.push_str(&draw(&items));
    out.push('\n');
    let _ = writeln!(
        out,
        "{} tests executed{}",
        results.summary.tests_count,
        p.tally(&results.summary)
    );
    out
}

/// Draws a levelled list with tree connectors, as Cerbos's tree (go-pretty's list):
/// `├─┬` / `└─┬` for items with children, `├──` / `└──` for leaves, two columns a level.
fn draw_tree(items: &[(usize, String)]) -> String {
    let mut out = String::new();
    // Whether the open item at each level has further siblings.
    let mut open: Vec<bool> = Vec::new();
    for (i, (level, text)) in items.iter().enumerate() {
        let rest = &items[i + 1..];
        let last = rest
            .iter()
            .find(|(l, _)| l <= level)
            .is_none_or(|(l, _)| l < level);
        let parent = rest.first().is_some_and(|(l, _)| l > level);
        open.truncate(*level);
        for more in &open {
            out.push_str(if *more { "│ " } else { "  " });
        }
        while open.len() < *level {
            open.push(false);
            out.push_str("  ");
        }
        out.push_str(if last { "└─" } else { "├─" });
        out.push(if parent { '┬' } else { '─' });
        out.push_str(text);
        out.push('\n');
        open.push(!last);
    }
    out
}

fn push_lines(items: &mut Vec<(usize, String)>, level: usize, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        items.push((level, line.to_owned()));
    }
}

fn shown(d: &Details, verbose: bool) -> bool {
    match (&d.result, &d.outcome) {
        (Verdict::Passed, _) => verbose,
        // Tests the user filtered out (--run, --test-filter) are not listed.
        (Verdict::Skipped, Outcome::Skipped(reason)) => {
            reason != SKIP_REASON_NAME && !super::filter::is_filter_reason(reason)
        }
        _ => true,
    }
}

fn add_suite(items: &mut Vec<(usize, String)>, p: &Painter, suite: &SuiteResult, verbose: bool) {
    let title = format!(
        "{} {}",
        p.paint(Style::Suite, &suite.name),
        p.paint(Style::File, &format!("({})", suite.file))
    );
    if !suite.error.is_empty() {
        items.push((0, format!("{title} {}", p.verdict(Verdict::Errored))));
        push_lines(items, 1, &p.paint(Style::Errored, &suite.error));
        return;
    }
    if suite.summary.overall_result == Verdict::Skipped {
        items.push((0, format!("{title} {}", p.verdict(Verdict::Skipped))));
        if !suite.skip_reason.is_empty() {
            push_lines(items, 1, &suite.skip_reason);
        }
        return;
    }
    items.push((0, format!("{title}{}", p.tally(&suite.summary))));
    for case in &suite.test_cases {
        let any = |d: &Details| shown(d, verbose);
        if !case
            .principals
            .iter()
            .flat_map(|pr| &pr.resources)
            .flat_map(|r| &r.actions)
            .any(|a| any(&a.details))
        {
            continue;
        }
        items.push((1, case.name.clone()));
        for principal in &case.principals {
            if !principal
                .resources
                .iter()
                .flat_map(|r| &r.actions)
                .any(|a| any(&a.details))
            {
                continue;
            }
            items.push((2, principal.name.clone()));
            for resource in &principal.resources {
                if !resource.actions.iter().any(|a| any(&a.details)) {
                    continue;
                }
                items.push((3, resource.name.clone()));
                for action in resource.actions.iter().filter(|a| any(&a.details)) {
                    items.push((
                        4,
                        format!("{} {}", action.name, p.verdict(action.details.result)),
                    ));
                    add_details(items, p, &action.details, verbose);
                }
            }
        }
    }
}

fn add_details(items: &mut Vec<(usize, String)>, p: &Painter, d: &Details, verbose: bool) {
    match &d.outcome {
        Outcome::Failure {
            expected,
            actual,
            outputs,
        } if outputs.is_empty() => items.push((
            5,
            format!(
                "OUTCOME: expected: {}, actual: {}",
                expected.as_str(),
                p.paint(Style::Failed, actual.as_str())
            ),
        )),
        Outcome::Failure { outputs, .. } => {
            items.push((5, "OUTCOME: output expectation unsatisfied".to_owned()));
            for o in outputs {
                items.push((6, o.src.clone()));
                let (expected, actual) = match &o.kind {
                    OutputFailureKind::Mismatched { expected, actual } => {
                        (expected, protojson(actual))
                    }
                    OutputFailureKind::Missing { expected } => {
                        (expected, p.paint(Style::Failed, "MISSING"))
                    }
                    OutputFailureKind::Errored { expected, error } => {
                        (expected, p.paint(Style::Failed, &format!("ERROR: {error}")))
                    }
                };
                items.push((7, format!("EXPECTED: {}", protojson(expected))));
                items.push((7, format!("ACTUAL: {actual}")));
            }
        }
        Outcome::Error(e) => push_lines(items, 5, &format!("ERROR: {e}")),
        Outcome::Skipped(reason) if !reason.is_empty() => {
            items.push((5, format!("SKIPPED: {reason}")))
        }
        Outcome::Skipped(_) => {}
        Outcome::Success { effect, outputs } => {
            if verbose {
                items.push((
                    5,
                    format!("RESULT: {}", p.paint(Style::Passed, effect.as_str())),
                ));
                if !outputs.is_empty() {
                    items.push((5, "OUTPUTS:".to_owned()));
                    let mut sorted: Vec<&OutputValue> = outputs.iter().collect();
                    sorted.sort_by(|a, b| a.src.cmp(&b.src));
                    for o in sorted {
                        items.push((6, o.src.clone()));
                        let value = match &o.value {
                            Ok(v) => protojson(v),
                            Err(e) => p.paint(Style::Failed, &format!("ERROR: {e}")),
                        };
                        items.push((7, value));
                    }
                }
            }
        }
    }
    // As Cerbos: the engine trace explains failures, not passing tests.
    if verbose && !d.engine_trace.is_empty() && d.result != Verdict::Passed {
        items.push((5, "ENGINE TRACE:".to_owned()));
        for line in &d.engine_trace {
            items.push((6, p.paint(Style::Dim, line.trim())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::results::OutputFailure;
    use super::*;
    use crate::policy::compiled::Effect;

    fn sample() -> TestResults {
        let mut suite = SuiteResult {
            file: "a_test.yaml".into(),
            name: "Suite".into(),
            ..SuiteResult::default()
        };
        let details = |result, outcome| Details {
            result,
            outcome,
            engine_trace: Vec::new(),
        };
        suite.add(
            "t",
            "alice",
            "doc",
            "view",
            details(
                Verdict::Passed,
                Outcome::Success {
                    effect: Effect::Allow,
                    outputs: Vec::new(),
                },
            ),
        );
        suite.add(
            "t",
            "alice",
            "doc",
            "edit",
            details(
                Verdict::Failed,
                Outcome::Failure {
                    expected: Effect::Allow,
                    actual: Effect::Deny,
                    outputs: Vec::new(),
                },
            ),
        );
        suite.add(
            "t",
            "bob",
            "doc",
            "view",
            details(
                Verdict::Failed,
                Outcome::Failure {
                    expected: Effect::Allow,
                    actual: Effect::Allow,
                    outputs: vec![OutputFailure {
                        src: "resource.doc.vdefault#r".into(),
                        kind: OutputFailureKind::Missing { expected: json!(1) },
                    }],
                },
            ),
        );
        let mut results = TestResults::default();
        results.push(suite);
        results.push(SuiteResult::errored(
            "b_test.yaml",
            "Unknown",
            "",
            "failed to load test suite:\n1:1 bad".into(),
        ));
        results
    }

    #[test]
    fn tree_shows_failures() {
        let text = render_tree(&sample(), false, false);
        assert_eq!(
            text,
            "Test results
├─┬Suite (a_test.yaml) [1 OK] [2 FAILED]
│ └─┬t
│   ├─┬alice
│   │ └─┬doc
│   │   └─┬edit [FAILED]
│   │     └──OUTCOME: expected: EFFECT_ALLOW, actual: EFFECT_DENY
│   └─┬bob
│     └─┬doc
│       └─┬view [FAILED]
│         └─┬OUTCOME: output expectation unsatisfied
│           └─┬resource.doc.vdefault#r
│             ├──EXPECTED: 1
│             └──ACTUAL: MISSING
└─┬Unknown (b_test.yaml) [ERROR]
  ├──failed to load test suite:
  └──1:1 bad

3 tests executed [1 OK] [2 FAILED]
"
        );
        let verbose = render_list(&sample(), true, true);
        assert!(verbose.contains("view \x1b[32m[OK]\x1b[0m"));
    }

    #[test]
    fn json_shape() {
        let v = render_json(&sample());
        assert_eq!(v["summary"]["overallResult"], "RESULT_ERRORED");
        assert_eq!(
            v["suites"][1]["error"],
            "failed to load test suite:\n1:1 bad"
        );
        assert_eq!(
            v["suites"][0]["testCases"][0]["principals"][1]["resources"][0]["actions"][0]["details"],
            json!({"result": "RESULT_FAILED", "failure": {"expected": "EFFECT_ALLOW", "actual": "EFFECT_ALLOW",
                "outputs": [{"src": "resource.doc.vdefault#r", "missing": {"expected": 1}}]}})
        );
    }

    #[test]
    fn tree_connectors() {
        let items = vec![
            (0, "a".to_owned()),
            (1, "b".to_owned()),
            (2, "c".to_owned()),
            (1, "d".to_owned()),
            (0, "e".to_owned()),
        ];
        assert_eq!(draw_tree(&items), "├─┬a\n│ ├─┬b\n│ │ └──c\n│ └──d\n└──e\n");
    }
}
