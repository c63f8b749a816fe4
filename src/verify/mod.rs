//! Policy tests (Cerbos's `verify`): the library behind `gatehouse compile`.
//!
//! Test suites (`*_test.yaml`, `*_test.yml`, `*_test.json`) are read with their shared
//! fixtures (`testdata/principals.*`, `resources.*`, `auxdata.*` next to the suite), their
//! tables are expanded into single tests, every test is decided by the engine, and the
//! results take the shape of Cerbos's `cerbos.policy.v1.TestResults`:
//!
//! ```text
//! run_tests(dir, policies, options)
//!     -> parse_suite + TestFixture::load -> expand_tests -> Engine::check_at -> TestResults
//!     -> render_json | render_junit | render_tree | render_list
//! ```
//!
//! A suite that cannot be read, or a test that cannot run, is reported in the results the
//! way Cerbos reports it (with Cerbos's messages), never as a panic.

mod compat;
mod decode;
mod filter;
mod fixture;
mod junit;
mod report;
mod results;
mod run;
mod suite;
mod table;

pub(crate) use filter::TestFilter;
pub use fixture::{FixtureError, TestFixture};
pub use junit::render_junit;
pub use report::{render_json, render_list, render_tree};
pub use results::{
    ActionResult, Details, Outcome, OutputFailure, OutputFailureKind, OutputValue, PrincipalResult,
    ResourceResult, SuiteResult, Summary, Tally, TestCaseResult, TestResults, Verdict,
};
pub use run::{
    SKIP_REASON_NAME, SKIP_REASON_PRINCIPAL, SKIP_REASON_RESOURCE, VerifyError, VerifyOptions,
    compile_for_tests, run_tests,
};
pub use suite::{
    Expectation, ExpectedOutput, FileError, Named, OutputExpectations, TableInput, TestOptions,
    TestSuite, TestTable, parse_suite,
};
pub use table::{ExpandError, Test, TestName, expand_tests};
