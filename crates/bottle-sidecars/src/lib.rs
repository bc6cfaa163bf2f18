//! bottle-sidecars: the reference sidecar bundle, one binary that is the bundle's PID 1 and each
//! of its daemons.
//!
//! - [`catalog`]: the daemons this image provides and how `BOTTLE_DAEMONS` selects them;
//! - [`init`]: PID 1: starts the selected daemons as child processes, prefixes their output,
//!   reaps, restarts, and stops them all quickly on SIGTERM;
//! - [`egress`]: the allowlisting HTTP/1.1 forward proxy, callable in-process;
//! - [`supervise`]: a minimal MCP endpoint;
//! - [`health`]: the image's health check;
//! - [`selfcheck`]: reports what the container really is, for the conformance suite.

pub mod catalog;
pub mod daemon;
pub mod egress;
pub mod health;
pub mod init;
pub mod selfcheck;
pub mod supervise;
