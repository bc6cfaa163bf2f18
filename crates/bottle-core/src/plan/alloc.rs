//! The planner's allocation: a /24 of the subnet pool and an address of the loopback pool for
//! a slug, first choice from a stable hash of the slug, then probing onwards past what is
//! taken. Pure, like the planner.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::spec::LoopbackChoice;

/// FNV-1a, 64 bit: a stable hash across platforms and Rust versions (std's hasher is neither),
/// so a slug's first-choice subnet is the same on every machine.
pub(crate) fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The `i`-th /24 of `pool`.
fn nth_subnet(pool: &Ipv4Net, i: u32) -> Ipv4Net {
    let base = u32::from(pool.network());
    Ipv4Net::new(Ipv4Addr::from(base + (i << 8)), 24).expect("prefix 24 is valid")
}

/// How many /24s `pool` holds.
fn subnet_count(pool: &Ipv4Net) -> u32 {
    1u32 << (24 - pool.prefix_len().min(24))
}

/// The subnet a slug tries first in `pool`: a hash of the slug. Two slugs can share it; the
/// allocator probes onwards from it.
pub fn first_choice_subnet(slug: &str, pool: &Ipv4Net) -> Ipv4Net {
    let n = subnet_count(pool);
    nth_subnet(pool, (stable_hash(slug) % u64::from(n)) as u32)
}

/// The first free /24 of `pool`, starting at the slug's first choice and probing onwards.
pub fn allocate_subnet(slug: &str, pool: &Ipv4Net, taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    let n = subnet_count(pool);
    let start = (stable_hash(slug) % u64::from(n)) as u32;
    (0..n)
        .map(|k| nth_subnet(pool, (start + k) % n))
        .find(|candidate| !taken.iter().any(|t| overlaps(candidate, t)))
        .ok_or_else(|| Error::PoolExhausted {
            what: "subnet",
            pool: pool.to_string(),
        })
}

/// Whether an address of a loopback pool may be handed out: not the pool's network or
/// broadcast address, not `.0`/`.255` of any /24 (tools treat those oddly), not 127.0.0.1.
fn usable_loopback(pool: &Ipv4Net, addr: Ipv4Addr) -> bool {
    let last = addr.octets()[3];
    (pool.prefix_len() >= 31 || (addr != pool.network() && addr != pool.broadcast()))
        && last != 0
        && last != 255
        && addr != Ipv4Addr::LOCALHOST
}

/// A loopback address for the slug: the fixed one, or the first free one of the pool starting
/// at the slug's hash.
pub fn allocate_loopback(
    slug: &str,
    choice: &LoopbackChoice,
    taken: &BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    let pool = match choice {
        LoopbackChoice::Fixed(addr) => return Ok(*addr),
        LoopbackChoice::Pool(pool) => pool,
    };
    let base = u32::from(pool.network());
    let n = 1u64 << (32 - pool.prefix_len());
    // A second, differently seeded hash, so that subnet and loopback collisions are unrelated.
    let start = stable_hash(&format!("loopback/{slug}")) % n;
    (0..n)
        .map(|k| Ipv4Addr::from(base + ((start + k) % n) as u32))
        .find(|a| usable_loopback(pool, *a) && !taken.contains(a))
        .ok_or_else(|| Error::PoolExhausted {
            what: "loopback address",
            pool: pool.to_string(),
        })
}
