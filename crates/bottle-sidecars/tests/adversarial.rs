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
//! - **The proxy's namespace** `bt-adv-<pid>-<test>`: `lo` (plus an own address 198.18.0.1
//!   on it) and one end of a veth pair, `bt0`, carrying the "bundle network" 192.0.2.0/24 and
//!   2001:db8:1::/64, as the bundle container has. Its only routes, besides the connected ones,
//!   send the documentation ranges (198.51.100.0/24, 203.0.113.0/24, 2001:db8:ffff::/48) *and
//!   every private class* (10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16, fc00::/7,
//!   fec0::/10, 64:ff9b::/96) to the gateway 192.0.2.2. The proxies run here under
//!   `ip netns exec`, so the resolver files the test writes to `/etc/netns/<ns>/` are theirs:
//!   `nameserver 127.0.0.1`, `search corp.example`, `options ndots:5`.
//! - **The far namespace** `bt-adv-<pid>-<test>-far`: the other end of the veth (the gateway),
//!   where each routed range is a `local` route on `lo`. Upstream listeners on `[::]`
//!   (dual-stack) on ports 22, 25, 80, 443, 8080, 8443, 9099, 65535 therefore accept a
//!   connection to *any* address of those ranges. A proxy that wrongly connects to 10.0.0.7 or
//!   169.254.169.254 is seen doing it, instead of being saved by a missing route.
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
//! (the attacker's connections to the proxies) are all in that namespace. Each of the two
//! tests below makes its own pair of namespaces, so they run side by side.
//!
//! # The far side logs everything
//!
//! - **DNS**: a UDP responder answering A/AAAA from the zone in `cases.rs` (rebinding names
//!   resolving to every refused class, a name with one public and one private address; names
//!   absent from the zone are NXDOMAIN; the `.corp.example` names exist only to catch a
//!   search-list lookup; a `silent.` name never gets an answer; a `flip` name answers its
//!   public address to the first query of each type and a private one to every later query, so
//!   a proxy that looks a name up again after checking it is caught connecting to 10.0.0.7),
//!   logging every query as `name TYPE`.
//! - **Upstreams**: every accepted connection is logged with the address and port it was made
//!   to and every byte received; anything that looks like HTTP gets `200` with the request head
//!   it received as the body.
//!
//! # The cases
//!
//! `cases.rs` is a table, one line per case (adding a case is adding a line): name, allowlist
//! group, what is sent (raw bytes; `CONNECT` then bytes in the tunnel, in one or more writes;
//! two requests on one connection; a request after a crowd of open tunnels; a head dripped a
//! byte at a time; or a tunnel left silent past the idle timeout), expected status (a code, one
//! of several where the spec leaves the choice open, or closed), expected decision line
//! (`allowed`/`denied` and a reason substring; or a tunnel allowed then closed, with the close
//! line's reason), and what the far side must have seen (nothing; a connection to exactly one
//! upstream; zero bytes at it; the one `Host` it got; a substring of what it got); a case may
//! also name the canonical `host` its decision line must carry (`.logs_host(..)`). The proxy
//! is started once per group (allowlist), and the cases run one after another so that
//! everything logged in between belongs to the case. A case's log lines are the ones whose
//! `client` is the local address of its connection.
//!
//! Besides its own columns every case asserts: exactly one decision line per request, with the
//! schema's fields; its `status` equals what the client got (for refusals, tunnels and 502s);
//! its `addr` is the upstream that was connected to (for allowed cases); an allowed plain-HTTP
//! exchange has a close line with the upstream's 200, and every close line has its counters; no
//! query of the search domain was ever sent; a request denied before resolution (anything but
//! `resolves to`) looked up no name at all; one request looked each name up once (a second
//! lookup is a rebinding window); no upstream was connected to without an allowed decision line
//! naming it; and the proxy is still running afterwards (it is restarted if
//! not and the case fails; if it was killed from outside, by SIGTERM or SIGKILL, the case is run
//! again once). The same table also lists allowlists the proxy must refuse to start with.
//!
//! The cases encode the proxy's contract as written (the egress behaviour summarised in
//! `docs/SECURITY.md`); where it leaves a choice open (400 or 403 for a refused spelling, the
//! reason for an address in two classes) a case accepts each. A failing case is a finding about
//! the proxy, not something to adjust the table to.
//!
//! Every case runs; the test fails once at the end listing every failing case with what it
//! sent and each mismatch, followed by the proxies' last stderr lines.
//!
//! # The property
//!
//! `property.rs` draws random requests with proptest (methods, schemes, userinfo, the table's
//! hosts as written or mangled, random URL-ish strings, ports, paths, `Host` headers, SNIs)
//! against the `main` allowlist, and checks that each gets a decision line, that no connection
//! ever reaches a destination that allowlist does not allow or lacks an allowed decision line
//! naming it, that no search-list lookup happens, and that the proxy survives; a failure is
//! shrunk to a minimal request. A second property spells addresses (allowed by a rule, or not)
//! in every form the C resolver reads (per-label decimal, hex and octal, one number, `a.b.c`,
//! `a.b`, IPv4-mapped IPv6): the upstream is reached exactly when a rule names the address.
//!
//! `BOTTLE_ADVERSARIAL_PROXY=/path/to/bottle-sidecars` runs both against another build of the
//! proxy.

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
