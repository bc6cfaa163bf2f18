//! Tests of the credential scanner: every encoded form of a secret, near misses, each
//! well-known format, findings that never carry the value.

use super::*;

const CANARY: &str = "canary-7Hq2pZx9Lw4Rt";

fn scanner() -> Scanner {
    Scanner::new([("API_TOKEN", CANARY), ("SHORT", "abc")])
}

/// Standard base64 with padding, for building haystacks the way a client would.
fn b64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut s = String::from_utf8(base64_unpadded(bytes, alphabet)).unwrap();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

#[track_caller]
fn check(haystack: &[u8], expect: Option<Encoding>) {
    let got = scanner().scan(haystack);
    let want = expect.map(|encoding| Finding::Secret {
        key: "API_TOKEN".into(),
        encoding,
    });
    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(haystack));
}

#[test]
fn a_secret_is_found_in_every_encoding() {
    check(
        format!("GET /x?k={CANARY} HTTP/1.1").as_bytes(),
        Some(Encoding::Raw),
    );
    let url: String = CANARY.bytes().map(|b| format!("%{b:02X}")).collect();
    check(format!("q={url}").as_bytes(), Some(Encoding::UrlEncoded));
    let partly = CANARY.replacen('-', "%2d", 1);
    check(format!("q={partly}").as_bytes(), Some(Encoding::UrlEncoded));
    let hex_upper: String = CANARY.bytes().map(|b| format!("{b:02X}")).collect();
    check(hex_upper.as_bytes(), Some(Encoding::Hex));
    check(hex_lower(CANARY.as_bytes()).as_slice(), Some(Encoding::Hex));
    // Inside longer base64 runs, at each alignment, in both alphabets.
    for prefix in ["", "x", "xy", "xyz", "user:"] {
        let plain = format!("{prefix}{CANARY}!");
        check(
            b64(plain.as_bytes(), STANDARD).as_bytes(),
            Some(Encoding::Base64),
        );
        let url_safe = b64(&[&[0xfb, 0xff][..], plain.as_bytes()].concat(), URL_SAFE);
        let found = scanner().scan(url_safe.as_bytes());
        assert!(
            matches!(
                found,
                Some(Finding::Secret {
                    encoding: Encoding::Base64 | Encoding::Base64Url,
                    ..
                })
            ),
            "{url_safe}: {found:?}"
        );
    }
    // Wrapped as MIME wraps base64: 76 characters a line.
    let long = format!("{}{CANARY}{}", "a".repeat(50), "b".repeat(50));
    let wrapped: Vec<String> = b64(long.as_bytes(), STANDARD)
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    check(wrapped.join("\r\n").as_bytes(), Some(Encoding::Base64));
    let hex_wrapped: Vec<String> = hex_lower(CANARY.as_bytes())
        .chunks(10)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    check(hex_wrapped.join("\n").as_bytes(), Some(Encoding::Hex));
}

#[test]
fn near_misses_pass() {
    let mut near = CANARY.to_string();
    near.replace_range(5..6, "X");
    check(near.as_bytes(), None);
    check(b64(near.as_bytes(), STANDARD).as_bytes(), None);
    check(hex_lower(near.as_bytes()).as_slice(), None);
    check(&CANARY.as_bytes()[..CANARY.len() - 1], None);
    // A secret too short to look for is not looked for.
    assert_eq!(scanner().keys(), ["API_TOKEN"]);
    check(b"abc abc abc", None);
}

#[test]
fn every_pattern_finds_its_example_and_passes_its_near_miss() {
    let scanner = Scanner::new(Vec::<(String, String)>::new());
    let patterns = patterns();
    assert!(patterns.len() >= 10, "the pattern set shrank");
    for p in &patterns {
        let embedded = format!("token: {} end", p.example);
        assert_eq!(
            scanner.scan(embedded.as_bytes()),
            Some(Finding::Pattern {
                name: p.name.clone()
            }),
            "{}: its example {:?}",
            p.name,
            p.example
        );
        let near = format!("token: {} end", p.near_miss);
        assert_eq!(
            scanner.scan(near.as_bytes()),
            None,
            "{}: its near miss {:?}",
            p.name,
            p.near_miss
        );
    }
}

#[test]
fn findings_never_carry_the_value() {
    let found = scanner().scan(CANARY.as_bytes()).unwrap().to_string();
    assert_eq!(found, "the value of secret API_TOKEN (raw)");
    assert!(!found.contains(CANARY));
}

#[test]
fn names_are_scanned_in_any_case() {
    let lower = format!("{}.exfil.test", CANARY.to_ascii_lowercase());
    assert_eq!(scanner().scan(lower.as_bytes()), None);
    assert!(scanner().scan_name(lower.as_bytes()).is_some());
}
