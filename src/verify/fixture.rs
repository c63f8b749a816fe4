//! Shared fixtures: the `testdata` directory next to a test suite, holding
//! `principals.{yaml,yml,json}`, `resources.*` and `auxdata.*` (also `auxData.*`, `aux_data.*`).

use std::path::Path;

use serde_json::Value as Json;

use super::compat::go_quote;
use super::suite::{
    FileError, Named, lookup, parse_aux_data_file, parse_principals_file, parse_resources_file,
};

/// Extensions of fixture files, in the order they are looked for.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];
/// Names of the aux data fixture file.
const AUX_DATA_NAMES: &[&str] = &["auxdata", "auxData", "aux_data"];

/// A fixture file that could not be read, in Cerbos's words
/// (`failed to load principals:\n5:5 unknown field "policyVursion"`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FixtureError(String);

/// The fixtures of a `testdata` directory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestFixture {
    principals: Named<Json>,
    principal_groups: Named<Vec<String>>,
    resources: Named<Json>,
    resource_groups: Named<Vec<String>>,
    aux_data: Named<Json>,
}

impl TestFixture {
    /// Loads the fixtures of a `testdata` directory. Missing files mean no fixtures of
    /// that kind.
    pub(crate) fn load(dir: &Path) -> Result<TestFixture, FixtureError> {
        let read = |names: &[&str]| -> Result<Option<String>, FixtureError> {
            for name in names {
                for ext in EXTENSIONS {
                    let path = dir.join(format!("{name}.{ext}"));
                    if path.is_file() {
                        return std::fs::read(&path)
                            .map(|b| Some(String::from_utf8_lossy(&b).into_owned()))
                            .map_err(|e| {
                                FixtureError(format!("failed to read {}: {e}", path.display()))
                            });
                    }
                }
            }
            Ok(None)
        };
        let principals = read(&["principals"])?;
        let resources = read(&["resources"])?;
        let aux_data = read(AUX_DATA_NAMES)?;
        Self::from_texts(
            principals.as_deref(),
            resources.as_deref(),
            aux_data.as_deref(),
        )
    }

    /// Reads fixtures from the text of a principals, a resources and an aux data file
    /// (each optional).
    pub fn from_texts(
        principals: Option<&str>,
        resources: Option<&str>,
        aux_data: Option<&str>,
    ) -> Result<TestFixture, FixtureError> {
        let failed = |what: &str, e: FileError| FixtureError(format!("failed to load {what}:{e}"));
        let mut fixture = TestFixture::default();
        if let Some(text) = principals {
            let file = parse_principals_file(text).map_err(|e| failed("principals", e))?;
            check_groups(&file.groups, |name| {
                lookup(&file.principals, name).is_some()
            })
            .map_err(|e| FixtureError(format!("failed to load principals: {e}")))?;
            fixture.principals = file.principals;
            fixture.principal_groups = file.groups;
        }
        if let Some(text) = resources {
            let file = parse_resources_file(text).map_err(|e| failed("resources", e))?;
            check_groups(&file.groups, |name| lookup(&file.resources, name).is_some())
                .map_err(|e| FixtureError(format!("failed to load resources: {e}")))?;
            fixture.resources = file.resources;
            fixture.resource_groups = file.groups;
        }
        if let Some(text) = aux_data {
            fixture.aux_data = parse_aux_data_file(text).map_err(|e| failed("aux data", e))?;
        }
        Ok(fixture)
    }

    /// A principal fixture.
    pub(crate) fn principal(&self, name: &str) -> Option<&Json> {
        lookup(&self.principals, name)
    }

    /// A resource fixture.
    pub(crate) fn resource(&self, name: &str) -> Option<&Json> {
        lookup(&self.resources, name)
    }

    /// An aux data fixture.
    pub(crate) fn aux_data(&self, name: &str) -> Option<&Json> {
        lookup(&self.aux_data, name)
    }

    /// The members of a principal group.
    pub(crate) fn principal_group(&self, name: &str) -> Option<&[String]> {
        lookup(&self.principal_groups, name).map(Vec::as_slice)
    }

    /// The members of a resource group.
    pub(crate) fn resource_group(&self, name: &str) -> Option<&[String]> {
        lookup(&self.resource_groups, name).map(Vec::as_slice)
    }
}

/// Checks that every member of every group exists.
pub(crate) fn check_groups(
    groups: &Named<Vec<String>>,
    exists: impl Fn(&str) -> bool,
) -> Result<(), String> {
    for (group, members) in groups {
        if let Some(missing) = members.iter().find(|m| !exists(m)) {
            return Err(format!(
                "missing fixture {} referenced in group {}",
                go_quote(missing),
                go_quote(group)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fixtures_and_reports_problems() {
        let f = TestFixture::from_texts(
            Some(
                "principals:\n  a: {id: a, roles: [r]}\nprincipalGroups:\n  g: {principals: [a]}\n",
            ),
            None,
            Some("auxData:\n  j: {jwt: {x: 1}}\n"),
        )
        .unwrap();
        assert!(f.principal("a").is_some());
        assert_eq!(f.principal_group("g").unwrap(), ["a".to_owned()]);
        assert_eq!(
            f.aux_data("j").unwrap(),
            &serde_json::json!({"jwt": {"x": 1}})
        );

        let err = TestFixture::from_texts(
            Some("principals:\n  a:\n    id: a\n    bad: 1\n"),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load principals:\n4:5 unknown field \"bad\""
        );
        let err = TestFixture::from_texts(
            Some(
                "principals:\n  a: {id: a, roles: [r]}\nprincipalGroups:\n  g: {principals: [b]}\n",
            ),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load principals: missing fixture \"b\" referenced in group \"g\""
        );
    }
}
