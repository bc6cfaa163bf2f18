//! The egress proxy against an attacker: a data-driven suite of requests an agent in a bottle
//! could send, each checked for the status it gets, the decision line the proxy logs, and what
//! the far side saw. The proxy runs as the real binary (`bottle-sidecars daemon egress`).
//!
//! # The world the test makes
//!
//! Everything happens in two network namespaces the test creates (`ip netns add`) and deletes
//! at the end, even on failure (a drop guard), so it needs root and iproute2 (CI has both; off
//! CI it skips with a note when it cannot make them). Neither namespace is connected to the
//! machine's own: no traffic can leave.
//!
//! - **The proxy's namespace** `bt-adv-<pid>`: `lo` (plus an own address 198.18.0.1 on it) and
//!   one end of a veth pair, `bt0`, carrying the "bundle network" 192.0.2.0/24 and
//!   2001:db8:1::/64, as the bundle container has. Its only routes, besides the connected ones,
//!   send the documentation ranges (198.51.100.0/24, 203.0.113.0/24, 2001:db8:ffff::/48) *and
//!   every private class* (10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16, fc00::/7) to
//!   the gateway 192.0.2.2. The proxies run here under `ip netns exec`, so the resolver files
//!   the test writes to `/etc/netns/<ns>/` are theirs: `nameserver 127.0.0.1`,
//!   `search corp.example`, `options ndots:5`.
//! - **The far namespace** `bt-adv-<pid>-far`: the other end of the veth (the gateway), where
//!   each routed range is a `local` route on `lo`. Upstream listeners on `[::]` (dual-stack)
//!   on ports 22, 25, 80, 443, 8080, 8443, 9099, 65535 therefore accept a connection to *any*
//!   address of those ranges. A proxy that wrongly connects to 10.0.0.7 or 169.254.169.254 is
//!   seen doing it, instead of being saved by a missing route.
//!
//! Why two namespaces and not upstream addresses on `lo`: the spec refuses "the proxy's own
//! addresses", so an upstream on an address of the proxy's own interfaces would be refused as
//! `own` whatever its class. The veth also gives the proxy a real non-loopback interface, so
//! the "bundle network" and "own address" classes are tested, not assumed.
//!
//! The test's own sockets are placed with `setns(2)` on the test thread: the far upstreams'
//! listeners are bound while the thread is in the far namespace, then the thread moves to the
//! proxy's namespace and binds the same upstream ports there (catching loopback, own and bundle
//! addresses), the DNS responder on 127.0.0.1:53, and builds the Tokio runtime, whose sockets
//! (the attacker's connections to the proxies) are all in that namespace.
//!
//! # The far side logs everything
//!
//! - **DNS**: a UDP responder answering A/AAAA from the zone in `cases.rs` (rebinding names
//!   resolving to every refused class, a name with one public and one private address; names
//!   absent from the zone are NXDOMAIN; the `.corp.example` names exist only to catch a
//!   search-list lookup), logging every query name.
//! - **Upstreams**: every accepted connection is logged with the address and port it was made
//!   to and every byte received; anything that looks like HTTP gets `200` with the request head
//!   it received as the body.
//!
//! # The cases
//!
//! `cases.rs` is a table, one line per case: name, allowlist group, what is sent (raw bytes, or
//! `CONNECT` then bytes in the tunnel), expected status (a code, one of several where the spec
//! leaves the choice open, or closed), expected decision line (`allowed`/`denied` and a reason
//! substring; or a tunnel allowed then closed, with the close line's reason), and what the far
//! side must have seen (nothing; a connection to exactly one upstream; zero bytes at it; the one
//! `Host` it got; a substring of what it got). The proxy is started once per group (allowlist),
//! and the cases run one after another so that everything logged in between belongs to the
//! case. A case's log lines are the ones whose `client` is the local address of its connection.
//!
//! Besides its own columns every case asserts: exactly one decision line, with the schema's
//! fields; its `status` equals what the client got (for refusals, tunnels and 502s); its `addr`
//! is the upstream that was connected to (for allowed cases); no query of the search domain was
//! ever sent; a request denied before resolution (anything but `resolves to`) looked up no name
//! at all; and the proxy is still running afterwards (it is restarted if not, and the case
//! fails).
//!
//! Every case runs; the test fails once at the end listing every failing case with what it
//! sent and each mismatch, followed by the proxies' last stderr lines.

#[path = "adversarial/cases.rs"]
mod cases;
#[path = "adversarial/harness.rs"]
mod harness;
#[path = "adversarial/property.rs"]
mod property;

#[test]
fn adversarial() {
    harness::run(
        cases::GROUPS,
        cases::zone(),
        cases::all(),
        cases::BAD_ALLOWLISTS,
    );
}

/// Random targets never lead to a connection outside the allowlist (see `property.rs`).
#[test]
fn random_targets_stay_inside_the_allowlist() {
    property::run();
}
