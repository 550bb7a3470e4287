//! Tooling above the data path (native only): synthetic models of real shapes with random
//! weights, for tests, benchmarks and memory planning without downloading the real files.

pub mod synth;
