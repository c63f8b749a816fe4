//! `gatehouse compile DIR`: load and compile a policy directory, report every error,
//! then run the policy test suites (`*_test.yaml`), as `cerbos compile` does.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use std::sync::Arc;

use super::diagnostics::{diagnostics, index_errors_json, load_failures_json, render, to_json};
use super::{EXIT_COMPILE_ERRORS, EXIT_TEST_FAILURES};
use crate::policy::compile::index_policies;
use crate::policy::compiled::CompiledPolicySet;
use crate::policy::load_dir;
use crate::verify::{self, VerifyOptions};

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// Human-readable.
    #[default]
    Tree,
    /// One line per item.
    List,
    /// JSON (Cerbos's `TestResults` shape).
    Json,
    /// JUnit XML, for CI systems (test results only).
    Junit,
}

/// When to colour the output (Cerbos's `--color` levels; `true`/`false` also read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum ColorLevel {
    /// Only on a terminal.
    #[default]
    Auto,
    /// Never.
    #[value(alias = "false")]
    Never,
    /// Always.
    #[value(alias = "true", alias = "256", alias = "16m")]
    Always,
}

/// Arguments of `gatehouse compile`.
#[derive(Debug, Args)]
#[command(
    args_override_self = true,
    after_long_help = "Examples:\n  gatehouse compile policies/\n  gatehouse compile -o json policies/ | jq .\n\n\
Exit codes (as cerbos compile): 0 compiled and tests passed, 3 compile errors, 4 test failures, 2 bad usage."
)]
pub(crate) struct CompileArgs {
    /// Policy directory (a Cerbos disk store).
    dir: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Tree)]
    output: OutputFormat,
    /// Test output format (default: the `--output` format).
    #[arg(long, value_enum)]
    test_output: Option<OutputFormat>,
    /// Colour the output.
    #[arg(long, value_enum, default_value_t = ColorLevel::Auto)]
    color: ColorLevel,
    /// Do not colour the output.
    #[arg(long)]
    no_color: bool,
    /// Directory with the test suites (default: the policy directory).
    #[arg(long)]
    tests: Option<PathBuf>,
    /// Filter tests by dimension (suite, test, principal, resource, action):
    /// `dimension=glob1,glob2;...`; may be given more than once.
    #[arg(long)]
    test_filter: Vec<String>,
    /// Run only tests whose name matches this regular expression (older Cerbos flag).
    #[arg(long)]
    run: Option<String>,
    /// Only compile; do not run tests.
    #[arg(long)]
    skip_tests: bool,
    /// Accepted for Cerbos compatibility: Gatehouse does not batch tests.
    #[arg(long)]
    skip_batching: bool,
    /// Run tests with strict evaluation (a condition that fails to evaluate denies).
    #[arg(long)]
    strict_evaluation: bool,
    /// Do not validate attributes against schemas while testing.
    #[arg(long)]
    ignore_schemas: bool,
    /// Show passing tests and engine traces of failures.
    #[arg(long)]
    verbose: bool,
}

/// Runs `gatehouse compile`.
pub(crate) fn run(args: CompileArgs) -> anyhow::Result<u8> {
    let color = !args.no_color
        && match args.color {
            ColorLevel::Auto => std::io::stdout().is_terminal(),
            ColorLevel::Never => false,
            ColorLevel::Always => true,
        };
    let test_filter = match verify::TestFilter::parse(&args.test_filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(super::EXIT_USAGE);
        }
    };
    let options = VerifyOptions {
        test_filter,
        run: args.run.clone(),
        ignore_schemas: args.ignore_schemas,
        trace: args.verbose,
        strict_evaluation: args.strict_evaluation,
        ..VerifyOptions::default()
    };
    let Some(set) = compile(&args, &options, color) else {
        return Ok(EXIT_COMPILE_ERRORS);
    };
    let n = set.executable_policies();
    if args.skip_tests {
        match args.output {
            // As `cerbos compile -o json --skip-tests`: nothing to print on success.
            OutputFormat::Json => {}
            _ => println!(
                "Compiled {n} executable policies from {}",
                args.dir.display()
            ),
        }
        return Ok(0);
    }
    let tests_dir = args.tests.clone().unwrap_or_else(|| args.dir.clone());
    let results = verify::run_tests(&tests_dir, Arc::new(set), &options)?;
    match args.test_output.unwrap_or(args.output) {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&verify::render_json(&results))?
        ),
        OutputFormat::Junit => print!("{}", verify::render_junit(&results, args.verbose)),
        OutputFormat::Tree => print!("{}", verify::render_tree(&results, args.verbose, color)),
        OutputFormat::List => print!("{}", verify::render_list(&results, args.verbose, color)),
    }
    Ok(if results.failed() {
        EXIT_TEST_FAILURES
    } else {
        0
    })
}

/// Loads and compiles the policies; `None` once their errors are printed.
fn compile(args: &CompileArgs, options: &VerifyOptions, color: bool) -> Option<CompiledPolicySet> {
    let json = args.output == OutputFormat::Json;
    // As `cerbos compile -o json`: problems found before compiling (files that do not
    // load, a store that does not index) are `lintErrors`; the rest `compileErrors`.
    let result = match load_dir(&args.dir) {
        Err(errors) if json => {
            let lint = load_failures_json(&errors, &args.dir);
            println!("{}", serde_json::json!({"lintErrors": lint}));
            return None;
        }
        Ok(store) if json => {
            let problems = index_policies(&store.policies).errors().to_vec();
            if !problems.is_empty() {
                let lint = index_errors_json(&problems, &args.dir);
                println!("{}", serde_json::json!({"lintErrors": lint}));
                return None;
            }
            verify::compile_for_tests(store, options)
        }
        loaded => loaded
            .map_err(Into::into)
            .and_then(|store| verify::compile_for_tests(store, options)),
    };
    let err = match result {
        Ok(set) => return Some(set),
        Err(err) => err,
    };
    let ds = diagnostics(&err);
    match args.output {
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::json!({"compileErrors": to_json(&ds, &args.dir)})
            )
        }
        _ => {
            for d in &ds {
                eprint!("{}", render(d, &args.dir, color));
            }
            eprintln!("{} error(s) in {}", ds.len(), args.dir.display());
        }
    }
    None
}
