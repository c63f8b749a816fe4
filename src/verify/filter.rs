//! Cerbos's `--test-filter`: globs over the suite name, test name, principal key,
//! resource key and action (`suite=Doc*;principal=alice,bob`). Several filters merge:
//! a dimension given more than once matches any of its globs, and every dimension given
//! must match.

use regex::Regex;

/// Why a test (or one of its actions) was left out by the filter, in Cerbos's words.
pub(crate) const SKIP_SUITE: &str = "Suite did not match the test filter";
/// See [`SKIP_SUITE`].
pub(crate) const SKIP_TEST: &str = "Test did not match the test filter";
/// See [`SKIP_SUITE`].
pub(crate) const SKIP_PRINCIPAL: &str = "Principal did not match the test filter";
/// See [`SKIP_SUITE`].
pub(crate) const SKIP_RESOURCE: &str = "Resource did not match the test filter";
/// See [`SKIP_SUITE`].
pub(crate) const SKIP_ACTION: &str = "No actions matched the test filter";

/// Whether `reason` is one of the skip reasons above.
pub(crate) fn is_filter_reason(reason: &str) -> bool {
    [
        SKIP_SUITE,
        SKIP_TEST,
        SKIP_PRINCIPAL,
        SKIP_RESOURCE,
        SKIP_ACTION,
    ]
    .contains(&reason)
}

/// The merged `--test-filter` flags; the default matches everything.
#[derive(Clone, Debug, Default)]
pub(crate) struct TestFilter {
    suite: Vec<Regex>,
    test: Vec<Regex>,
    principal: Vec<Regex>,
    resource: Vec<Regex>,
    action: Vec<Regex>,
}

/// A `*`/`?` glob as an anchored regex.
fn glob(pattern: &str) -> Regex {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).expect("an escaped glob is a valid regex")
}

fn any(globs: &[Regex], value: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.is_match(value))
}

impl TestFilter {
    /// Parses and merges `--test-filter` values (`dimension=glob1,glob2;...`).
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<TestFilter, String> {
        let mut filter = TestFilter::default();
        for spec in specs {
            for part in spec.as_ref().split(';').map(str::trim) {
                if part.is_empty() {
                    continue;
                }
                let (dimension, globs) = part.split_once('=').ok_or_else(|| {
                    format!("invalid test filter {part:?}: expected dimension=glob1,glob2")
                })?;
                let target = match dimension.trim() {
                    "suite" => &mut filter.suite,
                    "test" => &mut filter.test,
                    "principal" => &mut filter.principal,
                    "resource" => &mut filter.resource,
                    "action" => &mut filter.action,
                    other => {
                        return Err(format!(
                            "invalid test filter dimension {other:?}: expected suite, test, principal, resource or action"
                        ));
                    }
                };
                target.extend(
                    globs
                        .split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(glob),
                );
            }
        }
        Ok(filter)
    }

    /// Why a test is left out, checking the suite, test, principal and resource in
    /// Cerbos's order; `None` when it runs (perhaps for some of its actions only).
    pub(crate) fn skip_reason(
        &self,
        suite: &str,
        test: &str,
        principal: &str,
        resource: &str,
    ) -> Option<&'static str> {
        if !any(&self.suite, suite) {
            Some(SKIP_SUITE)
        } else if !any(&self.test, test) {
            Some(SKIP_TEST)
        } else if !any(&self.principal, principal) {
            Some(SKIP_PRINCIPAL)
        } else if !any(&self.resource, resource) {
            Some(SKIP_RESOURCE)
        } else {
            None
        }
    }

    /// Whether an action of a running test runs.
    pub(crate) fn runs_action(&self, action: &str) -> bool {
        any(&self.action, action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_merge_and_globs_match() {
        let f = TestFilter::parse(&["principal=alice,b*", "action=read;principal=carol"]).unwrap();
        assert_eq!(f.skip_reason("S", "t", "bob", "r"), None);
        assert_eq!(f.skip_reason("S", "t", "carol", "r"), None);
        assert_eq!(f.skip_reason("S", "t", "dave", "r"), Some(SKIP_PRINCIPAL));
        assert!(f.runs_action("read") && !f.runs_action("reader"));
        let f = TestFilter::parse(&["suite=Doc*", "test=owner ?eads"]).unwrap();
        assert_eq!(
            f.skip_reason("Other", "owner reads", "p", "r"),
            Some(SKIP_SUITE)
        );
        assert_eq!(f.skip_reason("Docs", "owner reads", "p", "r"), None);
        assert_eq!(
            f.skip_reason("Docs", "owner writes", "p", "r"),
            Some(SKIP_TEST)
        );
        assert!(TestFilter::parse(&["colour=red"]).is_err());
        assert!(TestFilter::parse(&["principal"]).is_err());
        assert_eq!(
            TestFilter::default().skip_reason("a", "b", "c", "d"),
            None,
            "no filter, nothing skipped"
        );
    }
}
