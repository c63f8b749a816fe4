//! The route table of `gatehouse routes`: every route, each method's action and where
//! that action comes from.

use super::{Positions, Step};
use crate::extauthz::RouteMapper;
use crate::extauthz::config::RouteConfig;
use crate::extauthz::route::{ActionSource, Route};

/// Methods listed for a route that matches every method: those with a default action.
const DEFAULTED: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// One line per route and method: `file:line:col  METHOD  path  resource  action  source`.
/// `routes` must already have been checked ([`RouteMapper::new`] succeeded).
pub(crate) fn route_table(routes: &[RouteConfig], positions: &Positions) -> Vec<String> {
    let Ok(mapper) = RouteMapper::new(routes) else {
        return Vec::new();
    };
    let mut rows: Vec<[String; 6]> = Vec::new();
    for (route, config) in mapper.routes().iter().zip(routes) {
        route_rows(route, config, positions, &mut rows);
    }
    align(&rows)
}

/// The rows of one route: a single one for a public route; else one per method (the
/// defaulted methods when it lists none, then the other methods).
fn route_rows(
    route: &Route,
    config: &RouteConfig,
    positions: &Positions,
    rows: &mut Vec<[String; 6]>,
) {
    let at = |extra: &[Step<'_>]| {
        let mut path = vec![
            Step::Key("extAuthz"),
            Step::Key("routes"),
            Step::Index(route.index),
        ];
        path.extend_from_slice(extra);
        positions
            .at(&path)
            .map_or_else(|| positions.file().to_string(), |s| s.to_string())
    };
    let here = at(&[]);
    let resource = route
        .resource
        .as_ref()
        .map_or(String::new(), |r| match route.plan() {
            // A plan route has no id: it covers every resource of its kind.
            Some(_) => format!("{} (all)", r.kind),
            None => format!("{} {}", r.kind, r.id),
        });
    if route.public {
        let methods = if route.methods().is_empty() {
            "*".to_string()
        } else {
            route.methods().join(",")
        };
        rows.push([
            here,
            methods,
            route.template().to_string(),
            resource,
            "-".into(),
            "public: allowed without a decision".into(),
        ]);
        return;
    }
    let methods: Vec<String> = if route.methods().is_empty() {
        DEFAULTED.iter().map(|m| m.to_string()).collect()
    } else {
        route.methods().to_vec()
    };
    for method in &methods {
        let (action, source) = method_action(route, config, method, &at);
        rows.push([
            here.clone(),
            method.clone(),
            route.template().to_string(),
            resource.clone(),
            action,
            source,
        ]);
    }
    if route.methods().is_empty() {
        let other = match route.action_with_source("OPTIONS") {
            Some((a, _)) => (
                a.to_string(),
                format!("action at {}", at(&[Step::Key("action")])),
            ),
            None => ("-".into(), "no action: denied".into()),
        };
        rows.push([
            here,
            "(other)".into(),
            route.template().to_string(),
            resource,
            other.0,
            other.1,
        ]);
    }
}

/// A method's action and where it comes from (`at` gives a position in the route's
/// configuration).
fn method_action(
    route: &Route,
    config: &RouteConfig,
    method: &str,
    at: &dyn Fn(&[Step<'_>]) -> String,
) -> (String, String) {
    match route.action_with_source(method) {
        Some((action, ActionSource::PerMethod)) => {
            let key = config
                .actions
                .keys()
                .find(|k| k.eq_ignore_ascii_case(method))
                .map_or(method, String::as_str);
            (
                action.to_string(),
                format!(
                    "actions.{key} at {}",
                    at(&[Step::Key("actions"), Step::Key(key)])
                ),
            )
        }
        Some((action, ActionSource::Route)) => (
            action.to_string(),
            format!("action at {}", at(&[Step::Key("action")])),
        ),
        Some((action, ActionSource::Plan)) => (
            action.to_string(),
            format!(
                "plan.action at {}: planned, the filter goes to the backend",
                at(&[Step::Key("plan"), Step::Key("action")])
            ),
        ),
        Some((action, ActionSource::Default(shape))) => (
            action.to_string(),
            format!("default for {method} on {}", shape.describe()),
        ),
        None => ("-".into(), "no action: denied".into()),
    }
}

/// The rows as lines, each column padded to its widest cell (the last one not padded).
fn align(rows: &[[String; 6]]) -> Vec<String> {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 5 {
                        c.clone()
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            cells.join("  ")
        })
        .collect()
}
