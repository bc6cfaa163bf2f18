//! bottle-bench: the contenders of `cargo xtask bench` and their measurement.
//!
//! - [`driver`]: options, the round-by-round schedule in worker processes, the final sweep;
//! - [`worker`]: one timed round, a scale run, the SIGTERM case, inside a worker process;
//! - [`contenders`]: the floor, bottle as a library and as a CLI, the engine's CLI;
//! - [`engine`] and [`http`]: the benchmark's own raw API client, for the floor and for
//!   sweeping, checking and preparing independently of the code under test;
//! - [`job`]: the names and addresses of one bottle;
//! - [`stats`] and [`report`]: medians, spreads, pairwise ratios, Markdown;
//! - [`git`]: the git part (`benches/git.rs`): clone and push through a bottle's git gate
//!   against directly, to the same local `git http-backend` upstream ([`git::upstream`], which
//!   the CLI's git gate tests use too);
//! - [`proxy`]: the proxy part (`benches/proxy.rs`): bottle's egress proxy against direct,
//!   tinyproxy and squid.
//!
//! The testcontainers contender is in the bench target (`benches/bottle.rs`), since
//! testcontainers is a dev-dependency.

pub mod args;
pub mod contenders;
pub mod driver;
pub mod engine;
pub mod git;
pub mod http;
pub mod job;
pub mod proxy;
pub mod report;
pub mod service;
pub mod stats;
pub mod worker;
