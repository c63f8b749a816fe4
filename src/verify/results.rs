//! Test results, shaped like Cerbos's `cerbos.policy.v1.TestResults`:
//! suites -> test cases -> principals -> resources -> actions -> details, with summaries.

use serde_json::Value as Json;

use crate::policy::compiled::Effect;

/// The result of a test, a suite or a run. Ordered as Cerbos orders them: the overall
/// result of a group is the greatest result in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Nothing ran (an empty suite).
    #[default]
    Unspecified,
    /// Skipped.
    Skipped,
    /// Passed.
    Passed,
    /// Failed: an expectation was not met.
    Failed,
    /// Errored: the test could not run.
    Errored,
}

impl Verdict {
    /// Cerbos's enum name, e.g. `RESULT_PASSED`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Unspecified => "RESULT_UNSPECIFIED",
            Verdict::Skipped => "RESULT_SKIPPED",
            Verdict::Passed => "RESULT_PASSED",
            Verdict::Failed => "RESULT_FAILED",
            Verdict::Errored => "RESULT_ERRORED",
        }
    }

    /// Whether this result fails a run (failed or errored).
    pub fn is_failure(self) -> bool {
        matches!(self, Verdict::Failed | Verdict::Errored)
    }
}

/// How many tests had one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tally {
    /// The result.
    pub(crate) result: Verdict,
    /// The count.
    pub(crate) count: u32,
}

/// Counts of a suite or a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// The greatest result.
    pub overall_result: Verdict,
    /// Number of tests (one per action).
    pub tests_count: u32,
    /// Counts per result, in result order.
    pub(crate) result_counts: Vec<Tally>,
}

impl Summary {
    /// Adds `count` tests with `result` to the tallies (not to `tests_count`).
    pub(crate) fn tally(&mut self, result: Verdict, count: u32) {
        match self.result_counts.iter_mut().find(|t| t.result == result) {
            Some(t) => t.count += count,
            None => {
                self.result_counts.push(Tally { result, count });
                self.result_counts.sort_by_key(|t| t.result);
            }
        }
    }

    /// The count of one result.
    pub(crate) fn count(&self, result: Verdict) -> u32 {
        self.result_counts
            .iter()
            .find(|t| t.result == result)
            .map_or(0, |t| t.count)
    }
}

/// An output produced by a rule for the tested action.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutputValue {
    /// The rule (`resource.kind.vdefault#rule`).
    pub(crate) src: String,
    /// The action.
    pub(crate) action: String,
    /// The value, or the evaluation error.
    pub(crate) value: Result<Json, String>,
}

/// Why an expected output was not met.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum OutputFailureKind {
    /// The rule produced another value.
    Mismatched {
        /// Expected value.
        expected: Json,
        /// Actual value.
        actual: Json,
    },
    /// The rule produced no output.
    Missing {
        /// Expected value.
        expected: Json,
    },
    /// The output expression failed.
    Errored {
        /// Expected value.
        expected: Json,
        /// The evaluation error.
        error: String,
    },
}

/// An expected output that was not met.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutputFailure {
    /// The rule.
    pub(crate) src: String,
    /// What went wrong.
    pub(crate) kind: OutputFailureKind,
}

/// The outcome of one test.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The expectations were met.
    Success {
        /// The effect.
        effect: Effect,
        /// The outputs produced for the action.
        outputs: Vec<OutputValue>,
    },
    /// An expectation was not met.
    Failure {
        /// Expected effect.
        expected: Effect,
        /// Actual effect.
        actual: Effect,
        /// Output expectations that were not met.
        outputs: Vec<OutputFailure>,
    },
    /// The test could not run.
    Error(String),
    /// The test was skipped, for this reason.
    Skipped(String),
}

/// The details of one test (one action).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Details {
    /// The result.
    pub(crate) result: Verdict,
    /// The outcome.
    pub(crate) outcome: Outcome,
    /// The engine's explanation, one line per step (only when tracing was asked for).
    pub(crate) engine_trace: Vec<String>,
}

impl Details {
    /// A test skipped for `reason`.
    pub(crate) fn skipped(reason: &str) -> Details {
        Details {
            result: Verdict::Skipped,
            outcome: Outcome::Skipped(reason.to_owned()),
            engine_trace: Vec::new(),
        }
    }
}

/// The result for one action.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ActionResult {
    /// The action.
    pub(crate) name: String,
    /// The details.
    pub(crate) details: Details,
}

/// The results for one resource.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ResourceResult {
    /// The resource fixture's name.
    pub(crate) name: String,
    /// The actions.
    pub(crate) actions: Vec<ActionResult>,
}

/// The results for one principal.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PrincipalResult {
    /// The principal fixture's name.
    pub(crate) name: String,
    /// The resources.
    pub(crate) resources: Vec<ResourceResult>,
}

/// The results of one test table.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TestCaseResult {
    /// The table's name.
    pub(crate) name: String,
    /// The principals.
    pub(crate) principals: Vec<PrincipalResult>,
}

/// The results of one suite file.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SuiteResult {
    /// The file, relative to the tests directory, with `/` separators.
    pub file: String,
    /// The suite's name (`Unknown` when the file could not be read).
    pub(crate) name: String,
    /// The counts.
    pub summary: Summary,
    /// Why the suite could not run.
    pub(crate) error: String,
    /// The test tables.
    pub(crate) test_cases: Vec<TestCaseResult>,
    /// The suite's description.
    pub(crate) description: String,
    /// Why the suite was skipped.
    pub(crate) skip_reason: String,
}

impl SuiteResult {
    /// An errored suite.
    pub(crate) fn errored(file: &str, name: &str, description: &str, error: String) -> Self {
        SuiteResult {
            file: file.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            summary: Summary {
                overall_result: Verdict::Errored,
                ..Summary::default()
            },
            error,
            ..SuiteResult::default()
        }
    }

    /// Records the details of one test.
    pub(crate) fn add(
        &mut self,
        table: &str,
        principal: &str,
        resource: &str,
        action: &str,
        details: Details,
    ) {
        let result = details.result;
        let case = match self.test_cases.iter().position(|c| c.name == table) {
            Some(i) => &mut self.test_cases[i],
            None => {
                self.test_cases.push(TestCaseResult {
                    name: table.to_owned(),
                    principals: Vec::new(),
                });
                let last = self.test_cases.len() - 1;
                &mut self.test_cases[last]
            }
        };
        let p = match case.principals.iter().position(|p| p.name == principal) {
            Some(i) => &mut case.principals[i],
            None => {
                case.principals.push(PrincipalResult {
                    name: principal.to_owned(),
                    resources: Vec::new(),
                });
                let last = case.principals.len() - 1;
                &mut case.principals[last]
            }
        };
        let r = match p.resources.iter().position(|r| r.name == resource) {
            Some(i) => &mut p.resources[i],
            None => {
                p.resources.push(ResourceResult {
                    name: resource.to_owned(),
                    actions: Vec::new(),
                });
                let last = p.resources.len() - 1;
                &mut p.resources[last]
            }
        };
        match r.actions.iter_mut().find(|a| a.name == action) {
            Some(a) => a.details = details,
            None => r.actions.push(ActionResult {
                name: action.to_owned(),
                details,
            }),
        }
        self.summary.tests_count += 1;
        self.summary.tally(result, 1);
        if result > self.summary.overall_result {
            self.summary.overall_result = result;
        }
    }

    /// Records an action left out by `--test-filter`: listed as skipped with `reason`,
    /// but not counted (as Cerbos); a suite of nothing else is skipped.
    pub(crate) fn add_filtered(
        &mut self,
        table: &str,
        principal: &str,
        resource: &str,
        action: &str,
        reason: &str,
    ) {
        let summary = self.summary.clone();
        self.add(table, principal, resource, action, Details::skipped(reason));
        self.summary = summary;
        self.summary.overall_result = self.summary.overall_result.max(Verdict::Skipped);
    }
}

/// The results of a run (`cerbos.policy.v1.TestResults`).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TestResults {
    /// The suites, by file name.
    pub suites: Vec<SuiteResult>,
    /// The counts of all suites.
    pub summary: Summary,
}

impl TestResults {
    /// Adds a suite's results and counts.
    pub(crate) fn push(&mut self, suite: SuiteResult) {
        self.summary.tests_count += suite.summary.tests_count;
        for t in &suite.summary.result_counts {
            self.summary.tally(t.result, t.count);
        }
        if suite.summary.overall_result > self.summary.overall_result {
            self.summary.overall_result = suite.summary.overall_result;
        }
        self.suites.push(suite);
    }

    /// Whether the run failed (a test failed or errored, or a suite errored).
    pub(crate) fn failed(&self) -> bool {
        self.summary.overall_result.is_failure()
    }
}
