//! The `grantline` binary's library: configuration and the command-line interface, so the
//! end-to-end tests can drive the same entry points the binary uses.

pub mod bench;
pub mod bench_edge;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dlq;
pub mod evidence;
pub mod narrative;
pub mod requests_cmd;
pub mod retention;
pub mod roles;
pub mod telemetry;
