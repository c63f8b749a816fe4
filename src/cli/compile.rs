//! `gatehouse compile DIR`: load and compile a policy directory, report every error.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::EXIT_USAGE;
use super::diagnostics::{diagnostics, render, to_json};
use crate::policy::{compile_store, load_dir};

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable.
    #[default]
    Tree,
    /// One line per item.
    List,
    /// JSON.
    Json,
}

/// Arguments of `gatehouse compile`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Examples:\n  gatehouse compile policies/\n  gatehouse compile -o json policies/ | jq .\n\n\
Exit codes: 0 compiled, 2 compile errors or bad usage."
)]
pub struct CompileArgs {
    /// Policy directory (a Cerbos disk store).
    pub dir: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Tree)]
    pub output: OutputFormat,
    /// Colour the output (default: only on a terminal).
    #[arg(long)]
    pub color: Option<bool>,
}

/// Runs `gatehouse compile`.
pub fn run(args: CompileArgs) -> anyhow::Result<u8> {
    let color = args
        .color
        .unwrap_or_else(|| std::io::stdout().is_terminal());
    let result = load_dir(&args.dir)
        .map_err(Into::into)
        .and_then(compile_store);
    match result {
        Ok(set) => {
            let n = set.executable_policies();
            match args.output {
                OutputFormat::Json => println!("{}", serde_json::json!({"policies": n})),
                _ => println!(
                    "Compiled {n} executable policies from {}",
                    args.dir.display()
                ),
            }
            Ok(0)
        }
        Err(err) => {
            let ds = diagnostics(&err);
            match args.output {
                OutputFormat::Json => println!("{}", to_json(&ds)),
                _ => {
                    for d in &ds {
                        eprint!("{}", render(d, &args.dir, color));
                    }
                    eprintln!("{} error(s) in {}", ds.len(), args.dir.display());
                }
            }
            Ok(EXIT_USAGE)
        }
    }
}
