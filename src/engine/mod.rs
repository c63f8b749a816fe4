//! The decision engine: evaluates a compiled policy set against check inputs.
