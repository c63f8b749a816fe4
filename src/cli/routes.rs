//! `gatehouse routes`: the route table of a configuration.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `gatehouse routes`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Examples:\n  gatehouse routes\n  gatehouse routes --config deploy/gatehouse.yaml\n\n\
Columns: where the route is, method, path, resource (kind id), action, where the action\n\
comes from. Methods without an action are denied."
)]
pub struct RoutesArgs {
    /// Configuration file (default: the bundled gatehouse.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Prints the table; a configuration that does not load is an error (exit 2).
pub fn run(args: RoutesArgs) -> anyhow::Result<u8> {
    let (config, positions, _) = super::serve::read_config(args.config.as_deref())?;
    for line in crate::config::route_table(&config.ext_authz.routes, &positions) {
        println!("{line}");
    }
    Ok(0)
}
