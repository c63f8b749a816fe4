//! JUnit XML, as `cerbos compile --test-output=junit` writes it (Go's `xml.MarshalIndent`
//! with two-space indentation, no XML declaration, no final line break).

use super::compat::protojson;
use super::results::{Outcome, OutputFailureKind, Summary, TestResults, Verdict};

const SKIP_TEST_CASE: &str = "This test was skipped";
const SKIP_TEST_SUITE: &str = "This test suite was skipped";

/// An XML element.
struct El {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    Empty,
    Children(Vec<El>),
    Text(String),
    Cdata(String),
}

impl El {
    fn new(name: &'static str) -> Self {
        El {
            name,
            attrs: Vec::new(),
            body: Body::Empty,
        }
    }

    fn attr(mut self, name: &'static str, value: impl ToString) -> Self {
        self.attrs.push((name, value.to_string()));
        self
    }

    fn children(mut self, children: Vec<El>) -> Self {
        self.body = Body::Children(children);
        self
    }

    fn text(mut self, text: impl Into<String>) -> Self {
        self.body = Body::Text(text.into());
        self
    }

    fn cdata(mut self, text: impl Into<String>) -> Self {
        self.body = Body::Cdata(text.into());
        self
    }

    fn write(&self, depth: usize, out: &mut String) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&"  ".repeat(depth));
        out.push('<');
        out.push_str(self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape(v, out);
            out.push('"');
        }
        out.push('>');
        match &self.body {
            Body::Children(children) if !children.is_empty() => {
                for c in children {
                    c.write(depth + 1, out);
                }
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
            Body::Text(t) => escape(t, out),
            Body::Cdata(t) if !t.is_empty() => {
                out.push_str("<![CDATA[");
                out.push_str(&t.replace("]]>", "]]]]><![CDATA[>"));
                out.push_str("]]>");
            }
            _ => {}
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push('>');
    }
}

/// Escapes text and attribute values as Go's `encoding/xml` does.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn summary_attrs(el: El, errors: u32, failures: u32, skipped: u32, tests: u32) -> El {
    el.attr("errors", errors)
        .attr("failures", failures)
        .attr("skipped", skipped)
        .attr("tests", tests)
}

fn property(name: &str, value: &str) -> El {
    El::new("property").attr("name", name).text(value)
}

fn output(src: &str, expected: String, actual: String) -> El {
    El::new("output").attr("src", src).children(vec![
        El::new("expected").cdata(expected),
        El::new("actual").cdata(actual),
    ])
}

/// The results as JUnit XML. `verbose` adds a `skipped` element to skipped suites.
pub fn render_junit(results: &TestResults, verbose: bool) -> String {
    let mut suites = Vec::with_capacity(results.suites.len());
    let mut suite_errors = 0;
    let mut suite_skips = 0;
    for s in &results.suites {
        let mut el = El::new("testsuite");
        if !s.description.is_empty() {
            el = el.attr("description", &s.description);
        }
        el = el.attr("name", &s.name).attr("file", &s.file);
        let mut children = Vec::new();
        let mut counts = Summary::default();
        match s.summary.overall_result {
            Verdict::Errored => {
                children.push(
                    El::new("error")
                        .attr("type", Verdict::Errored.as_str())
                        .text(&s.error),
                );
                counts.tally(Verdict::Errored, 1);
                suite_errors += 1;
            }
            Verdict::Skipped => {
                if verbose {
                    children.push(El::new("skipped").attr("message", SKIP_TEST_SUITE));
                }
                counts.tally(Verdict::Skipped, 1);
                suite_skips += 1;
            }
            _ => {}
        }
        children.push(El::new("properties"));
        if matches!(s.summary.overall_result, Verdict::Passed | Verdict::Failed) {
            for case in &s.test_cases {
                for p in &case.principals {
                    for r in &p.resources {
                        for a in &r.actions {
                            let (result, el) = test_case(a.details.result, &a.details.outcome);
                            counts.tally(result, 1);
                            let mut kids: Vec<El> = el.into_iter().collect();
                            kids.push(El::new("properties").children(vec![
                                property("principal", &p.name),
                                property("resource", &r.name),
                                property("action", &a.name),
                            ]));
                            children.push(
                                El::new("testcase")
                                    .attr("file", &s.file)
                                    .attr("classname", format!("{}.{}.{}", p.name, r.name, a.name))
                                    .attr("name", &case.name)
                                    .children(kids),
                            );
                        }
                    }
                }
            }
        }
        el = summary_attrs(
            el,
            counts.count(Verdict::Errored),
            counts.count(Verdict::Failed),
            counts.count(Verdict::Skipped),
            s.summary.tests_count,
        );
        suites.push(el.children(children));
    }
    let sum = &results.summary;
    let root = summary_attrs(
        El::new("testsuites"),
        suite_errors + sum.count(Verdict::Errored),
        sum.count(Verdict::Failed),
        suite_skips + sum.count(Verdict::Skipped),
        sum.tests_count,
    )
    .children(suites);
    let mut out = String::new();
    root.write(0, &mut out);
    out
}

/// The element describing one test's outcome (none for a passed test without details).
fn test_case(result: Verdict, outcome: &Outcome) -> (Verdict, Option<El>) {
    let el = match (result, outcome) {
        (Verdict::Errored, o) => {
            let message = match o {
                Outcome::Error(e) => e.as_str(),
                _ => "",
            };
            Some(El::new("error").attr("type", result.as_str()).text(message))
        }
        (
            Verdict::Failed,
            Outcome::Failure {
                expected,
                actual,
                outputs,
            },
        ) => {
            let mut kids = Vec::new();
            let mut message = "Effect expectation unsatisfied";
            if !outputs.is_empty() {
                message = "Output expectation unsatisfied";
                let outputs = outputs
                    .iter()
                    .map(|o| match &o.kind {
                        OutputFailureKind::Mismatched { expected, actual } => {
                            output(&o.src, protojson(expected), protojson(actual))
                        }
                        OutputFailureKind::Missing { expected } => {
                            output(&o.src, protojson(expected), String::new())
                        }
                        OutputFailureKind::Errored { expected, error } => output(
                            &o.src,
                            protojson(expected),
                            format!("Failed to evaluate output expression: {error}"),
                        ),
                    })
                    .collect();
                kids.push(El::new("outputs").children(outputs));
            }
            kids.push(El::new("actual").text(actual.as_str()));
            kids.push(El::new("expected").text(expected.as_str()));
            Some(
                El::new("failure")
                    .attr("type", result.as_str())
                    .attr("message", message)
                    .children(kids),
            )
        }
        (Verdict::Passed, Outcome::Success { effect, outputs }) => {
            let mut kids = Vec::new();
            if !outputs.is_empty() {
                let outputs = outputs
                    .iter()
                    .map(|o| match &o.value {
                        Ok(v) => output(&o.src, protojson(v), protojson(v)),
                        Err(e) => output(
                            &o.src,
                            "null".to_owned(),
                            format!("Failed to evaluate output expression: {e}"),
                        ),
                    })
                    .collect();
                kids.push(El::new("outputs").children(outputs));
            }
            kids.push(El::new("actual").text(effect.as_str()));
            kids.push(El::new("expected").text(effect.as_str()));
            Some(
                El::new("success")
                    .attr("type", result.as_str())
                    .children(kids),
            )
        }
        (Verdict::Skipped, _) => Some(El::new("skipped").attr("message", SKIP_TEST_CASE)),
        _ => None,
    };
    (result, el)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_indentation_and_escaping() {
        let el = El::new("a").attr("x", "\"<&>\n").children(vec![
            El::new("b"),
            El::new("c").text("t'"),
            El::new("d").cdata("x]]>y"),
        ]);
        let mut out = String::new();
        el.write(0, &mut out);
        assert_eq!(
            out,
            "<a x=\"&#34;&lt;&amp;&gt;&#xA;\">\n  <b></b>\n  <c>t&#39;</c>\n  <d><![CDATA[x]]]]><![CDATA[>y]]></d>\n</a>"
        );
    }
}
