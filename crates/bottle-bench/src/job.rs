//! One bottle's worth of work, the same for every contender: a network with an explicit /24,
//! the bundle on a pinned IP with its agent-facing ports published on a loopback address.

use std::net::Ipv4Addr;

use crate::engine::PREFIX;

/// The subnet pool the benchmark allocates from (distinct from the test suites' pools).
pub const SUBNET_POOL: &str = "10.230.0.0/16";
/// The loopback pool the benchmark allocates from.
pub const LOOPBACK_POOL: &str = "127.95.0.0/16";

/// The reference image's agent-facing daemons with supervise on: egress and supervise.
pub const DAEMONS: &str = "egress,supervise";
/// Their ports, in catalog order.
pub const PORTS: [u16; 2] = [9099, 9100];

/// What one contender creates for one bottle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub slug: String,
    pub network: String,
    pub container: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub loopback: Ipv4Addr,
    pub daemons: String,
    pub ports: Vec<u16>,
    /// Bottle's default limits, so every contender's bundle costs the engine the same.
    pub memory_bytes: u64,
    pub pids: i64,
}

impl Job {
    /// The job of slot `slot` (0..=250): subnet `10.230.<slot>.0/24`, loopback
    /// `127.95.<slot>.2`, names `bt-bench-<kind>-<slug>`.
    pub fn new(slug: &str, slot: u8) -> Job {
        Job {
            slug: slug.to_string(),
            network: format!("{PREFIX}-net-{slug}"),
            container: format!("{PREFIX}-box-{slug}"),
            subnet: format!("10.230.{slot}.0/24"),
            gateway: Ipv4Addr::new(10, 230, slot, 1),
            ip: Ipv4Addr::new(10, 230, slot, 2),
            loopback: Ipv4Addr::new(127, 95, slot, 2),
            daemons: DAEMONS.to_string(),
            ports: PORTS.to_vec(),
            memory_bytes: bottle_core::plan::DEFAULT_MEMORY_BYTES,
            pids: bottle_core::plan::DEFAULT_PIDS,
        }
    }
}
