//! hellod: a fixed greeting over HTTP from one small static binary.
//!
//! `config` turns flags and environment into a [`config::Command`]; `server` runs it on
//! tiny_http with the help of `listener`, `greeting` and `shutdown`; `tiny_http_gaps` holds every
//! workaround for tiny_http's gaps; `healthcheck` is the client side for container probes.

pub mod config;
pub mod greeting;
pub mod healthcheck;
pub mod listener;
pub mod process;
pub mod server;
pub mod shutdown;
pub mod tiny_http_gaps;
