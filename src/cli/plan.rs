//! `gatehouse plan`: which resources of a kind may a principal act on (Cerbos's
//! `PlanResources`), from the command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::check::{EngineFlags, json_object};
use crate::engine::Principal;
use crate::planner::{PlanInput, PlanOutput, PlanResource};
use crate::policy::load_and_compile;

/// Output format of `plan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    /// The filter as Cerbos's `filterDebug`, for people.
    #[default]
    Text,
    /// The filter, `filterDebug`, matched scopes and validation errors as JSON.
    Json,
}

/// Arguments of `gatehouse plan`.
#[derive(Debug, Args)]
#[command(after_long_help = "Example:\n  \
gatehouse plan --principal bob --role manager --principal-attr '{\"department\":\"engineering\"}' \\\n    \
--kind document --action read")]
pub(crate) struct PlanArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Principal id.
    #[arg(long)]
    principal: String,
    /// Principal role (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Principal attributes as a JSON object.
    #[arg(long)]
    principal_attr: Option<String>,
    /// Principal scope.
    #[arg(long, default_value = "")]
    principal_scope: String,
    /// Principal policy version.
    #[arg(long, default_value = "")]
    principal_version: String,
    /// Resource kind.
    #[arg(long)]
    kind: String,
    /// Resource attributes known in advance, as a JSON object.
    #[arg(long)]
    resource_attr: Option<String>,
    /// Resource scope.
    #[arg(long, default_value = "")]
    resource_scope: String,
    /// Resource policy version.
    #[arg(long, default_value = "")]
    resource_version: String,
    /// Action to plan (repeatable: the filter allows a resource for all of them).
    #[arg(long = "action")]
    actions: Vec<String>,
    /// Engine settings and the clock.
    #[command(flatten)]
    engine: EngineFlags,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = PlanFormat::Text)]
    output: PlanFormat,
    /// Also print which rules contributed to the filter: for each action and role, each
    /// matching rule's policy, name, effect, planned condition and `file:line:col`.
    #[arg(long)]
    explain: bool,
}

/// Runs `gatehouse plan`.
pub(crate) fn run(args: PlanArgs) -> anyhow::Result<u8> {
    if args.actions.is_empty() {
        bail!("give at least one --action");
    }
    let input = plan_input(&args)?;
    let policies = load_and_compile(&args.policies)
        .with_context(|| format!("policies in {} do not compile", args.policies.display()))?;
    let (engine, now) = args.engine.engine(policies)?;
    let out = engine.plan_at(&input, now)?;
    match args.output {
        PlanFormat::Json => {
            let j = plan_json(&out, args.explain);
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
        PlanFormat::Text => print_plan(&input, &out, args.explain),
    }
    Ok(0)
}

/// The planner's input from the flags.
fn plan_input(args: &PlanArgs) -> anyhow::Result<PlanInput> {
    Ok(PlanInput {
        request_id: String::new(),
        principal: Principal {
            id: args.principal.clone(),
            roles: args.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
            attr: json_object("principal-attr", args.principal_attr.as_deref())?,
            policy_version: args.principal_version.clone(),
            scope: args.principal_scope.clone(),
        },
        resource: PlanResource {
            kind: args.kind.clone(),
            attr: json_object("resource-attr", args.resource_attr.as_deref())?,
            policy_version: args.resource_version.clone(),
            scope: args.resource_scope.clone(),
        },
        actions: args.actions.clone(),
        aux_data: Default::default(),
        explain: args.explain,
    })
}

/// `--output json`: the plan as PlanResources answers it, with the steps under `--explain`.
fn plan_json(out: &PlanOutput, explain: bool) -> serde_json::Value {
    let mut j = serde_json::json!({
        "actions": out.actions,
        "resourceKind": out.kind,
        "filter": out.filter.to_json(),
        "filterDebug": out.filter_debug,
        "matchedScopes": out.matched_scopes,
        "validationErrors": out.validation_errors.iter().map(|v| serde_json::json!({
            "path": v.path, "message": v.message, "source": v.source.as_str(),
        })).collect::<Vec<_>>(),
    });
    if explain {
        j["explain"] = out
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "action": s.action, "role": s.role, "policy": s.policy,
                    "rule": s.rule, "effect": s.effect, "condition": s.condition,
                    "location": s.location,
                })
            })
            .collect();
    }
    j
}

/// `--output text`: the filter's kind and expression, validation errors and the steps.
fn print_plan(input: &PlanInput, out: &PlanOutput, explain: bool) {
    println!(
        "{} {:?} for principal {:?} {:?}: {}",
        input.resource.kind,
        input.actions,
        input.principal.id,
        input
            .principal
            .roles
            .iter()
            .map(|r| &**r)
            .collect::<Vec<_>>(),
        out.filter.kind.as_str()
    );
    println!("{}", out.filter_debug);
    for v in &out.validation_errors {
        println!(
            "validation error ({}): {} {}",
            v.source.as_str(),
            v.path,
            v.message
        );
    }
    if explain {
        print_steps(&out.steps);
    }
}

/// The rules that took part, grouped by action and role (`--explain`).
fn print_steps(steps: &[crate::planner::PlanStep]) {
    if steps.is_empty() {
        println!("no rule matched");
        return;
    }
    println!("rules that contributed:");
    let mut last: Option<(&str, &str)> = None;
    for s in steps {
        if last != Some((&s.action, &s.role)) {
            println!("  action {:?}, role {:?}:", s.action, s.role);
            last = Some((&s.action, &s.role));
        }
        let at = if s.location.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.location)
        };
        println!(
            "    {} {}#{}{}: {}",
            s.effect, s.policy, s.rule, at, s.condition
        );
    }
}
