//! `gatehouse.yaml` as a file: its schema and defaults as plain data ([`file`]), turned
//! into each part's settings once; reading it with the position of every key, the checks
//! that need those positions (routes), and errors in the `file:line:col` form that
//! policy errors have, with "did you mean" hints for misspelled keys.

mod error;
pub(crate) mod file;
mod positions;
pub(crate) mod reference;
mod table;

use error::{ConfigError, ConfigErrors};
pub(crate) use file::{BUNDLED_CONFIG, CerbosApiMode, ClientAuth, ServeConfig, TlsSection};
pub(crate) use positions::Positions;
pub(crate) use positions::Step;
pub(crate) use table::route_table;

use serde::de::DeserializeOwned;

use crate::extauthz::route::RouteError;

/// Reads a configuration document into `T`, keeping the positions of its nodes for
/// later checks. `file` names the document in errors.
pub fn parse<T: DeserializeOwned>(text: &str, file: &str) -> Result<(T, Positions), ConfigErrors> {
    let positions = Positions::new(file, text);
    match serde_saphyr::from_str::<T>(text) {
        Ok(value) => Ok((value, positions)),
        Err(e) => Err(ConfigErrors::one(error::from_yaml(&e, file))),
    }
}

/// Turns route errors into configuration errors at the route's line, or at the
/// offending text for problems inside one key; `None` when there are none.
pub(crate) fn route_errors(errors: Vec<RouteError>, positions: &Positions) -> Option<ConfigErrors> {
    let mut list: Vec<ConfigError> = errors
        .into_iter()
        .map(|e| {
            let mut path = vec![
                Step::Key("extAuthz"),
                Step::Key("routes"),
                Step::Index(e.index),
            ];
            path.extend(e.field.iter().map(|k| Step::Key(k)));
            let span = match e.offset {
                Some(offset) => positions
                    .in_scalar(&path, offset)
                    .or_else(|| positions.at(&path)),
                None => positions.at(&path),
            }
            .or_else(|| positions.at(&path[..3]));
            ConfigError::new(span, e.to_string())
        })
        .collect();
    list.sort_by_key(|e| e.span().map(|s| (s.line, s.col)));
    ConfigErrors::from_vec(list)
}
