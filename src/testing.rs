//! Helpers shared by the unit tests.

/// Property-test settings: `default_cases` generated inputs per property (small, for CI),
/// or `PROPTEST_CASES` when set (the long runs of README's development section). No
/// regression files are written: a failure prints the minimal input and its seed.
pub(crate) fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
