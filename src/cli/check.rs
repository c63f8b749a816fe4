//! `gatehouse check`: decide one request and explain why.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::cel::Timestamp;
use crate::cel::{MapValue, Value, from_json};
use crate::engine::{
    CheckInput, Engine, EngineConfig, Principal, Resource, SchemaEnforcement, Trace,
    input_from_json, output_to_json,
};
use crate::policy::{CompiledPolicySet, load_and_compile};

/// Output format of `check`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    /// Decisions and the explain trace, for people.
    #[default]
    Text,
    /// The engine's CheckOutput as JSON, with the trace as a list of lines.
    Json,
}

/// Schema enforcement level, as a flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum EnforcementArg {
    /// Do not validate attributes.
    #[default]
    None,
    /// Validate and report.
    Warn,
    /// Validate and deny on violation.
    Reject,
}

/// The engine flags `check` and `plan` share: settings and a fixed clock.
#[derive(Debug, Args)]
pub(crate) struct EngineFlags {
    /// Fix `now()` (RFC 3339), for reproducible answers.
    #[arg(long)]
    now: Option<String>,
    /// Fall back to the nearest existing ancestor scope.
    #[arg(long)]
    lenient_scope_search: bool,
    /// Schema enforcement.
    #[arg(long, value_enum, default_value_t = EnforcementArg::None)]
    schema_enforcement: EnforcementArg,
    /// Globals (`G.x`) as a JSON object.
    #[arg(long)]
    globals: Option<String>,
}

impl EngineFlags {
    /// The engine over `policies` with these settings, and the time to decide at.
    pub(super) fn engine(
        &self,
        policies: CompiledPolicySet,
    ) -> anyhow::Result<(Engine, Timestamp)> {
        let config = EngineConfig {
            globals: json_object("globals", self.globals.as_deref())?,
            lenient_scope_search: self.lenient_scope_search,
            schema_enforcement: match self.schema_enforcement {
                EnforcementArg::None => SchemaEnforcement::None,
                EnforcementArg::Warn => SchemaEnforcement::Warn,
                EnforcementArg::Reject => SchemaEnforcement::Reject,
            },
            ..EngineConfig::default()
        };
        let now = match &self.now {
            Some(t) => chrono::DateTime::parse_from_rfc3339(t).context("--now must be RFC 3339")?,
            None => crate::engine::now(),
        };
        Ok((Engine::new(Arc::new(policies), config), now))
    }
}

/// Arguments of `gatehouse check`.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:\n  \
gatehouse check --principal bob --role manager --principal-attr '{\"department\":\"engineering\"}' \\\n    \
--kind document --resource-id doc-1 --resource-attr '{\"owner\":\"alice\",\"department\":\"engineering\"}' \\\n    \
--action read --action approve\n  \
gatehouse check --input request.json -o json\n\n\
The input file holds a Cerbos CheckInput: {principal, resource, actions, auxData} (JSON or YAML).")]
pub(crate) struct CheckArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// A CheckInput as JSON or YAML (instead of the flags below).
    #[arg(long, conflicts_with_all = ["principal", "kind"])]
    input: Option<PathBuf>,
    /// Principal id.
    #[arg(long)]
    principal: Option<String>,
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
    kind: Option<String>,
    /// Resource id.
    #[arg(long, default_value = "")]
    resource_id: String,
    /// Resource attributes as a JSON object.
    #[arg(long)]
    resource_attr: Option<String>,
    /// Resource scope.
    #[arg(long, default_value = "")]
    resource_scope: String,
    /// Resource policy version.
    #[arg(long, default_value = "")]
    resource_version: String,
    /// Action to decide (repeatable).
    #[arg(long = "action")]
    actions: Vec<String>,
    /// Engine settings and the clock.
    #[command(flatten)]
    engine: EngineFlags,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = CheckFormat::Text)]
    output: CheckFormat,
}

/// A JSON object flag as a CEL map (an absent flag is an empty map).
pub(super) fn json_object(flag: &str, text: Option<&str>) -> anyhow::Result<Arc<MapValue>> {
    let Some(text) = text else {
        return Ok(Arc::new(MapValue::new()));
    };
    let v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("--{flag} is not valid JSON"))?;
    match from_json(&v) {
        Value::Map(m) => Ok(m),
        _ => bail!("--{flag} must be a JSON object"),
    }
}

fn input(args: &CheckArgs) -> anyhow::Result<CheckInput> {
    if let Some(path) = &args.input {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_saphyr::from_str(&text)
            .with_context(|| format!("{} is not valid JSON or YAML", path.display()))?;
        return input_from_json(&v).map_err(Into::into);
    }
    let Some(principal) = &args.principal else {
        bail!("give --input FILE, or --principal and --kind");
    };
    let Some(kind) = &args.kind else {
        bail!("--kind is required");
    };
    if args.actions.is_empty() {
        bail!("give at least one --action");
    }
    Ok(CheckInput {
        request_id: String::new(),
        principal: Principal {
            id: principal.clone(),
            roles: args.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
            attr: json_object("principal-attr", args.principal_attr.as_deref())?,
            policy_version: args.principal_version.clone(),
            scope: args.principal_scope.clone(),
        },
        resource: Resource {
            kind: kind.clone(),
            id: args.resource_id.clone(),
            attr: json_object("resource-attr", args.resource_attr.as_deref())?,
            policy_version: args.resource_version.clone(),
            scope: args.resource_scope.clone(),
        },
        actions: args.actions.clone(),
        aux_data: Default::default(),
    })
}

/// Runs `gatehouse check`.
pub(crate) fn run(args: CheckArgs) -> anyhow::Result<u8> {
    let input = input(&args)?;
    let policies = load_and_compile(&args.policies)
        .with_context(|| format!("policies in {} do not compile", args.policies.display()))?;
    let (engine, now) = args.engine.engine(policies)?;
    let mut trace = Trace::new();
    let out = engine.check_traced(&input, now, &mut trace)?;
    match args.output {
        CheckFormat::Json => {
            let mut j = output_to_json(&out);
            j["trace"] = serde_json::json!(
                trace
                    .events()
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            );
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
        CheckFormat::Text => {
            println!(
                "{} {:?} for principal {:?} {:?}",
                input.resource.kind,
                input.resource.id,
                input.principal.id,
                input
                    .principal
                    .roles
                    .iter()
                    .map(|r| &**r)
                    .collect::<Vec<_>>()
            );
            let width = out
                .actions
                .iter()
                .map(|a| a.action.len())
                .max()
                .unwrap_or(0);
            for a in &out.actions {
                let scope = if a.scope.is_empty() {
                    String::new()
                } else {
                    format!(" (scope {:?})", a.scope)
                };
                println!(
                    "  {:width$}  {:12}  {}{scope}",
                    a.action,
                    a.effect.as_str(),
                    a.policy
                );
            }
            if !out.effective_derived_roles.is_empty() {
                println!(
                    "effective derived roles: {}",
                    out.effective_derived_roles.join(", ")
                );
            }
            for o in &out.outputs {
                match &o.value {
                    Ok(v) => println!("output {} [{}]: {v}", o.src, o.action),
                    Err(e) => println!("output {} [{}]: error: {e}", o.src, o.action),
                }
            }
            for v in &out.validation_errors {
                println!(
                    "validation error ({}): {} {}",
                    v.source.as_str(),
                    v.path,
                    v.message
                );
            }
            println!("\nexplain:");
            for e in trace.events() {
                println!("  {e}");
            }
        }
    }
    Ok(0)
}
