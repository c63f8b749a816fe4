//! Policies: the serde model of Cerbos policy files, the disk loader and the compiler.
