//! The fuzz targets on stable: every committed corpus input and every crash the fuzzers
//! once found pass, and the stable fuzzer runs and reports failures.

#![allow(clippy::unwrap_used)]

mod corpus;
mod regressions;
mod stable;
