//! Console output of the commands a person runs.

pub mod progress;
