//! `gatehouse config`: the JSON Schema and the reference of `gatehouse.yaml`.

use clap::{Args, Subcommand};

/// Arguments of `gatehouse config`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// What to print.
    #[command(subcommand)]
    what: ConfigCommand,
}

/// What `gatehouse config` prints.
#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// The JSON Schema of gatehouse.yaml (for editors: `# yaml-language-server: $schema=...`).
    Schema,
    /// The reference of gatehouse.yaml as Markdown (docs/configuration.md).
    Docs,
}

/// Prints the schema or the reference.
pub(crate) fn run(args: ConfigArgs) -> anyhow::Result<u8> {
    match args.what {
        ConfigCommand::Schema => println!(
            "{}",
            serde_json::to_string_pretty(&crate::config::reference::schema())?
        ),
        ConfigCommand::Docs => print!("{}", crate::config::reference::markdown()),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::ServeConfig;
    use crate::config::reference::{self, KEYS, Type, children, name};

    /// A document putting `probe` at `path` (`a.b[].c`), as JSON (which is YAML).
    fn document(path: &str, probe: serde_json::Value) -> String {
        let mut value = probe;
        for segment in path.rsplit('.').filter(|s| !s.is_empty()) {
            value = match segment.strip_suffix("[]") {
                Some(list) => serde_json::json!({ list: [value] }),
                None => serde_json::json!({ segment: value }),
            };
        }
        value.to_string()
    }

    /// The names a parse error says were expected (`expected one of a, b`).
    fn expected(message: &str) -> Vec<String> {
        let Some((_, list)) = message.split_once("expected ") else {
            return Vec::new();
        };
        let list = list.strip_prefix("one of ").unwrap_or(list);
        let mut names: Vec<String> = list
            .split(", ")
            .flat_map(|s| s.split(" or "))
            .map(|s| s.trim().trim_matches('`').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        names.sort();
        names
    }

    fn probe(path: &str, value: serde_json::Value) -> String {
        match ServeConfig::parse(&document(path, value), "probe.yaml") {
            Ok(_) => String::new(),
            Err(e) => e.errors()[0].message().to_string(),
        }
    }

    #[test]
    fn issue_18_the_reference_lists_exactly_the_keys_the_types_accept() {
        let mut parents = vec![String::new()];
        for key in KEYS {
            match key.ty {
                Type::Object => parents.push(key.path.to_string()),
                Type::ObjectList | Type::OneOfList => parents.push(format!("{}[]", key.path)),
                _ => {}
            }
        }
        let mut problems = Vec::new();
        for parent in &parents {
            let message = probe(parent, serde_json::json!({"zzProbe": 1}));
            let accepted = expected(&message);
            let mut listed: Vec<String> = children(parent).map(|k| name(k).to_string()).collect();
            listed.sort();
            if accepted != listed {
                problems.push(format!(
                    "{parent:?}: the types accept {accepted:?} ({message}), the reference (src/config/reference.rs) lists {listed:?}"
                ));
            }
        }
        for key in KEYS {
            if let Type::Enum(values) = key.ty {
                let message = probe(key.path, serde_json::json!("zzProbe"));
                if message.contains("unknown variant") {
                    let mut listed: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                    listed.sort();
                    if expected(&message) != listed {
                        problems.push(format!(
                            "{}: {message} but the reference lists {values:?}",
                            key.path
                        ));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn issue_18_every_example_loads() {
        for (section, example) in reference::EXAMPLES {
            assert!(example.starts_with(&format!("{section}:")));
            if let Err(e) = ServeConfig::parse(example, section) {
                panic!("the example of {section} does not load:\n{e}");
            }
        }
    }

    #[test]
    fn issue_18_docs_and_schema_files_are_generated_from_the_reference() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap_or_default();
        assert!(
            docs == reference::markdown(),
            "docs/configuration.md is stale: run `cargo run -- config docs > docs/configuration.md`"
        );
        let schema =
            std::fs::read_to_string(root.join("docs/gatehouse.schema.json")).unwrap_or_default();
        let generated = serde_json::to_string_pretty(&reference::schema()).unwrap() + "\n";
        assert!(
            schema == generated,
            "docs/gatehouse.schema.json is stale: run `cargo run -- config schema > docs/gatehouse.schema.json`"
        );
    }

    fn validate(text: &str) -> Vec<String> {
        let store = crate::jsonschema::SchemaStore::new(vec![(
            "gatehouse.schema.json".to_string(),
            reference::schema(),
        )])
        .unwrap();
        let schema = store.load("cerbos:///gatehouse.schema.json").unwrap();
        let json: serde_json::Value = serde_saphyr::from_str(text).unwrap();
        schema
            .validate(&crate::cel::from_json(&json))
            .iter()
            .map(|v| format!("{v:?}"))
            .collect()
    }

    #[test]
    fn issue_18_bundled_and_example_configs_pass_the_schema() {
        let bundled = crate::config::BUNDLED_CONFIG;
        assert!(
            bundled.starts_with("# yaml-language-server: $schema=docs/gatehouse.schema.json\n"),
            "the bundled gatehouse.yaml names its schema on its first line"
        );
        assert_eq!(validate(bundled), Vec::<String>::new());
        for (section, example) in reference::EXAMPLES {
            assert_eq!(validate(example), Vec::<String>::new(), "{section}");
        }
        // The schema is not vacuous: what the loader refuses, it refuses too.
        assert!(!validate("extAuthz: {routes: [{path: /x, method: [GET]}]}\n").is_empty());
        assert!(!validate("audit: {mode: loud}\n").is_empty());
        assert!(!validate("server: {grpcListenAddr: 3593}\n").is_empty());
        assert!(!validate("extAuthz: {principal: {sources: [{jwt: {jwks: {file: k}, algorithms: [RS256]}, mtls: {}}]}}\n").is_empty());
    }
}
