//! `gatehouse routes`: the route table of a configuration, routes imported from an app's
//! OpenAPI document, and what the routes and the policies leave uncovered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::extauthz::openapi::{ImportedRoute, import_table, routes_from_openapi};

/// Arguments of `gatehouse routes`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Examples:\n  gatehouse routes\n  gatehouse routes --config deploy/gatehouse.yaml\n  \
gatehouse routes import openapi.json\n  gatehouse routes check --openapi openapi.json\n\n\
Columns: where the route is, method, path, resource (kind id), action, where the action\n\
comes from. Methods without an action are denied."
)]
pub(crate) struct RoutesArgs {
    /// Configuration file (default: the bundled gatehouse.yaml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// What to do (default: print the configuration's route table).
    #[command(subcommand)]
    command: Option<RoutesCommand>,
}

/// `gatehouse routes` subcommands.
#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Prints the routes a FastAPI app's OpenAPI document gives (x-gatehouse-action,
    /// x-gatehouse-resource, x-gatehouse-id, x-gatehouse-public; else the defaults).
    Import {
        /// The OpenAPI document (JSON), e.g. the app's /openapi.json saved to a file.
        file: PathBuf,
        /// Pass operations marked public (x-gatehouse-public, `security: []`) through
        /// without a decision; otherwise they are decided like the others.
        #[arg(long)]
        public_passthrough: bool,
    },
    /// Lists operations no policy covers (a kind/action no rule allows or denies for any
    /// role) and policy actions no route produces; exit status 1 if an operation is
    /// uncovered.
    Check {
        /// Also check the routes of this OpenAPI document (hand-written routes first).
        #[arg(long)]
        openapi: Option<PathBuf>,
        /// As `import --public-passthrough`: public operations need no policy.
        #[arg(long)]
        public_passthrough: bool,
    },
}

/// Runs the subcommand; a configuration or document that does not load is an error (exit 2).
pub(crate) fn run(args: RoutesArgs) -> anyhow::Result<u8> {
    match args.command {
        None => {
            let (config, positions, _) = super::serve::read_config(args.config.as_deref())?;
            for line in crate::config::route_table(&config.ext_authz.routes, &positions) {
                println!("{line}");
            }
            Ok(0)
        }
        Some(RoutesCommand::Import {
            file,
            public_passthrough,
        }) => {
            for line in import_table(&import(&file, public_passthrough)?) {
                println!("{line}");
            }
            Ok(0)
        }
        Some(RoutesCommand::Check {
            openapi,
            public_passthrough,
        }) => check(
            args.config.as_deref(),
            openapi.as_deref(),
            public_passthrough,
        ),
    }
}

/// Largest OpenAPI document read.
const MAX_DOCUMENT: u64 = 16 * 1024 * 1024;

fn import(file: &Path, public_passthrough: bool) -> anyhow::Result<Vec<ImportedRoute>> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("{}", file.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_DOCUMENT,
        "{}: larger than {MAX_DOCUMENT} bytes",
        file.display()
    );
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
    routes_from_openapi(&doc, public_passthrough).with_context(|| format!("{}", file.display()))
}

/// (kind, action) pairs of the routes, with the routes producing each.
fn produced(
    routes: &[crate::extauthz::config::RouteConfig],
) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let Ok(mapper) = crate::extauthz::RouteMapper::new(routes) else {
        return out;
    };
    for route in mapper.routes() {
        let Some(resource) = &route.resource else {
            continue;
        };
        if route.public {
            continue;
        }
        let methods: Vec<String> = if route.methods().is_empty() {
            ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec()
        } else {
            route.methods().to_vec()
        };
        for m in methods {
            if let Some(action) = route.action_for(&m) {
                out.entry((resource.kind.clone(), action))
                    .or_default()
                    .push(format!("{m} {}", route.template()));
            }
        }
    }
    out
}

/// The actions each resource kind's role-based rules name (resource policies' rules and
/// role policies' rules per resource), as written (globs included). Principal policies
/// name one principal, not a role: they cover nothing here.
fn policy_actions(dir: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    use crate::policy::model::PolicyKind;
    let store = crate::policy::load_dir(dir)
        .map_err(|e| anyhow::anyhow!("policies in {}: {e}", dir.display()))?;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for policy in store.policies.iter().filter(|p| !p.disabled) {
        match &policy.kind {
            PolicyKind::Resource(r) => {
                let set = out.entry(r.resource.clone()).or_default();
                set.extend(r.rules.iter().flat_map(|rule| rule.actions.iter().cloned()));
            }
            PolicyKind::Role(r) => {
                for rule in &r.rules {
                    out.entry(rule.resource.clone())
                        .or_default()
                        .extend(rule.allow_actions.iter().cloned());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn check(
    config_path: Option<&Path>,
    openapi: Option<&Path>,
    public_passthrough: bool,
) -> anyhow::Result<u8> {
    let (config, _, base) = super::serve::read_config(config_path)?;
    let mut routes = config.ext_authz.routes.clone();
    if let Some(file) = openapi {
        routes.extend(
            import(file, public_passthrough)?
                .into_iter()
                .map(|r| r.config),
        );
    }
    crate::extauthz::RouteMapper::new(&routes).map_err(|e| anyhow::anyhow!("routes: {e:?}"))?;
    let dir = config
        .policies
        .as_ref()
        .and_then(|p| p.directory.as_ref())
        .map(|d| base.join(d))
        .context("routes check needs a policy directory (policies.directory)")?;
    let actions = policy_actions(&dir)?;
    let produced = produced(&routes);
    let mut uncovered = 0usize;
    for ((kind, action), sources) in &produced {
        let covered = actions.get(kind).is_some_and(|list| {
            list.iter().any(|a| {
                crate::policy::compiled::glob::Glob::new(a).is_ok_and(|g| g.matches(action))
            })
        });
        if !covered {
            uncovered += 1;
            println!(
                "uncovered: {} produce {kind}/{action}, which no policy rule names",
                sources.join(", ")
            );
        }
    }
    let produced_pairs: BTreeSet<(&str, &str)> = produced
        .keys()
        .map(|(k, a)| (k.as_str(), a.as_str()))
        .collect();
    for (kind, list) in &actions {
        for action in list.iter().filter(|a| a.as_str() != "*") {
            if !produced_pairs.contains(&(kind.as_str(), action.as_str())) {
                println!("unused: policy action {kind}/{action} is produced by no route");
            }
        }
    }
    println!(
        "{} kind/action pairs from routes, {uncovered} uncovered",
        produced.len()
    );
    Ok(u8::from(uncovered > 0))
}
