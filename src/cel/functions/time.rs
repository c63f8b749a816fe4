//! (being written)

use super::FunctionRegistry;

pub(super) fn register(_r: &mut FunctionRegistry) {}
