//! Properties of the allowlist's parsers and matcher, over inputs an attacker controls: no
//! panic on any text, one canonical form per host and rule, every spelling of an address read
//! as that address, and an allowed request always names a destination some rule names.

use std::net::{IpAddr, Ipv4Addr};

use bottle_core::allowlist::{AllowRule, Allowlist, Host, HostPattern, PortPattern};
use proptest::prelude::*;

/// Labels and separators an attacker would mix: letters, digits, hex prefixes, dots, colons,
/// brackets, wildcards, percent signs and odd bytes.
fn hostish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("a".to_string()),
            Just("allowed".to_string()),
            Just("test".to_string()),
            Just("0x7f".to_string()),
            Just("0177".to_string()),
            Just("127".to_string()),
            Just("1".to_string()),
            Just("0".to_string()),
            Just("255".to_string()),
            Just("256".to_string()),
            Just("4294967295".to_string()),
            Just(".".to_string()),
            Just(":".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("*".to_string()),
            Just("%".to_string()),
            Just("-".to_string()),
            Just("::ffff:".to_string()),
            Just("/".to_string()),
            "[a-zA-Z0-9_\\-\u{e9}]{1,3}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

/// Every spelling the C resolver accepts for an IPv4 address, for one address.
fn spellings(ip: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    vec![
        format!("{a}.{b}.{c}.{d}"),
        format!("{n}"),
        format!("0x{n:x}"),
        format!("0X{n:X}"),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
        format!("{a}.{}", n & 0x00ff_ffff),
        format!("{a}.{b}.{}", n & 0xffff),
        format!("{a}.{b}.{c}.{d}."),
        format!("[::ffff:{a}.{b}.{c}.{d}]"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn hosts_parse_without_panic_to_one_canonical_form(text in hostish()) {
        if let Some(host) = Host::parse(&text) {
            let again = Host::parse(&host.to_string()).or_else(|| Host::parse(&format!("[{host}]")));
            prop_assert_eq!(again.as_ref(), Some(&host));
            if let Host::Name(name) = &host {
                prop_assert_eq!(name.to_ascii_lowercase(), name.clone());
                prop_assert!(!name.ends_with('.'));
                // A name never ends in a number: that would be an address in disguise.
                let last = name.rsplit('.').next().unwrap();
                prop_assert!(!last.bytes().all(|b| b.is_ascii_digit()), "{}", name);
                let hex = last.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                prop_assert!(!hex, "{}", name);
            }
        }
    }

    #[test]
    fn every_spelling_of_an_address_is_that_address(n in any::<u32>()) {
        let ip = Ipv4Addr::from(n);
        for spelling in spellings(ip) {
            prop_assert_eq!(Host::parse(&spelling), Some(Host::Ip(IpAddr::V4(ip))), "{}", spelling);
        }
    }

    #[test]
    fn rules_parse_without_panic_and_round_trip(text in hostish(), port in prop_oneof![
        Just(String::new()), Just(":*".to_string()), Just(":443".to_string()),
        Just(":0".to_string()), Just(":65536".to_string()), Just(":+80".to_string()),
        Just(":".to_string()), "(:[0-9]{1,6})",
    ]) {
        let pattern = format!("{text}{port}");
        if let Ok(rule) = pattern.parse::<AllowRule>() {
            let shown = rule.to_string();
            let again = shown.parse::<AllowRule>();
            prop_assert_eq!(again, Ok(rule), "{} -> {}", pattern, shown);
        }
    }

    /// Whatever the rules and the request, an allowed request's canonical host is one a rule
    /// names on that port: an address inside an address rule, or a name equal to an exact rule
    /// or strictly below a wildcard's domain at a label boundary.
    #[test]
    fn an_allowed_request_names_what_a_rule_names(
        rules in prop::collection::vec(hostish(), 1..4),
        rule_ports in prop::collection::vec(prop_oneof![Just(""), Just(":*"), Just(":8080")], 4),
        host in hostish(),
        port in prop_oneof![Just(80u16), Just(443), Just(8080), Just(22), 1u16..],
    ) {
        let patterns: Vec<String> = rules
            .iter()
            .zip(&rule_ports)
            .map(|(r, p)| format!("{r}{p}"))
            .filter(|p| p.parse::<AllowRule>().is_ok())
            .collect();
        let list = Allowlist::parse(&patterns.join(",")).unwrap();
        if !list.allows(&host, port) {
            return Ok(());
        }
        let canonical = Host::parse(&host).expect("an allowed host parses");
        let named = list.rules.iter().any(|r| {
            let port_ok = match r.port {
                PortPattern::Web => port == 80 || port == 443,
                PortPattern::Any => true,
                PortPattern::One(p) => p == port,
            };
            let host_ok = match (&r.host, &canonical) {
                (HostPattern::Net(net), Host::Ip(ip)) => net.contains(ip),
                (HostPattern::Exact(e), Host::Name(n)) => e == n,
                (HostPattern::Subdomains(s), Host::Name(n)) => n.ends_with(&format!(".{s}")),
                _ => false,
            };
            port_ok && host_ok
        });
        prop_assert!(named, "{:?} allowed {}:{} ({:?})", patterns, host, port, canonical);
    }
}
