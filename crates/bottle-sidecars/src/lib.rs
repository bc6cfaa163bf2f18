//! bottle-sidecars: the reference sidecar bundle, one binary that is the bundle's PID 1 and each
//! of its daemons.
//!
//! - [`catalog`]: the daemons this image provides and how `BOTTLE_DAEMONS` selects them;
//! - [`init`]: PID 1: starts the selected daemons as child processes, prefixes their output,
//!   reaps, restarts, and stops them all quickly on SIGTERM;
//! - [`egress`]: the allowlisting HTTP/1.1 forward proxy, callable in-process;
//! - [`services`]: the service endpoints, which add credentials the agent never holds;
//! - [`gitgate`]: the git gate: the agent's fetches and pushes, each push checked before it is
//!   forwarded upstream with a credential the agent never holds;
//! - [`supervise`]: a minimal MCP endpoint;
//! - [`health`]: the image's health check;
//! - [`leak`]: the credential scan of what leaves the bundle;
//! - [`outq`]: output through a bounded queue, for the init and the proxy's log;
//! - [`selfcheck`]: reports what the container really is, for the conformance suite.

pub mod catalog;
pub mod daemon;
pub mod egress;
pub mod gitgate;
pub mod health;
pub mod init;
pub mod leak;
pub mod outq;
pub mod selfcheck;
pub mod services;
pub mod supervise;
