//! The library side of the `x402` binary: how the local stack is put together, shared with
//! the benchmarks crate.

pub mod logging;
pub mod stack;
