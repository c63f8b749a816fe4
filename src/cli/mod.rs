//! The `gatehouse` command line: one file per subcommand.
//!
//! Exit codes (`cerbos compile`'s): 0 success, 3 policies do not compile, 4 policy
//! tests failed; 2 bad usage or a failure to start.

mod admin;
mod catch_panic;
mod check;
mod compile;
mod config_cmd;
mod diagnostics;
mod listener;
mod log_escape;
mod plan;
mod reload;
mod routes;
mod serve;
mod servers;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the command line is wrong, or the command could not start.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: the policies do not compile (as `cerbos compile`).
pub(crate) const EXIT_COMPILE_ERRORS: u8 = 3;
/// Exit code: policy tests failed (as `cerbos compile`).
pub(crate) const EXIT_TEST_FAILURES: u8 = 4;

/// Gatehouse: Cerbos-compatible authorization for Envoy and your APIs.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a policy directory and run its policy tests (like `cerbos compile`).
    Compile(compile::CompileArgs),
    /// Decide one request from the command line and explain the decision.
    Check(Box<check::CheckArgs>),
    /// Plan a query (Cerbos's PlanResources): the filter of the resources of a kind that
    /// a principal may act on.
    Plan(Box<plan::PlanArgs>),
    /// Serve Envoy ext_authz and the Cerbos API (gRPC and HTTP) on the policies.
    /// `gatehouse server --config=FILE` accepts a Cerbos configuration file.
    #[command(alias = "server")]
    Serve(serve::ServeArgs),
    /// Print every route of the configuration: each method's action and where it
    /// comes from (the route's `action`, its `actions`, or the method's default).
    Routes(routes::RoutesArgs),
    /// Print the JSON Schema (`config schema`) or the reference (`config docs`) of
    /// gatehouse.yaml.
    Config(config_cmd::ConfigArgs),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => compile::run(args),
        Command::Check(args) => check::run(*args),
        Command::Plan(args) => plan::run(*args),
        Command::Serve(args) => serve::run(args),
        Command::Routes(args) => routes::run(args),
        Command::Config(args) => config_cmd::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
