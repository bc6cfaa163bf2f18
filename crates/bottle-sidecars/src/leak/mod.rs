//! Finds a credential in bytes on their way out of the bundle: the value of a secret the bottle
//! was given, raw or in a common encoding, or a well-known credential format.
//!
//! The egress proxy scans what an agent sends (a plain-HTTP request's target, headers and body;
//! a tunnel's target) and the git gate scans pushed blobs, with the same [`Scanner`].
//!
//! - Known secrets: each value is looked for raw, hex (any case), base64 and base64url at each of
//!   the three alignments a value can have inside a longer encoded run, and URL-encoded (the
//!   haystack is percent-decoded, so any mix of encoded and plain bytes is caught). The base64
//!   and hex forms are also looked for with line breaks removed (MIME and PEM wrap base64 at
//!   64 or 76 characters). One Aho-Corasick automaton holds every form of every secret.
//! - Formats: the regexes of `patterns.toml` (cloud access keys, git host and registry tokens,
//!   private key blocks, ...), data with a true and a near-miss example each.
//!
//! A finding names the secret's key or the pattern and the encoding, never the value.
//! Values shorter than [`MIN_SECRET_LEN`] are not looked for: they would match innocent text.

use std::borrow::Cow;
use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::Deserialize;

/// The environment variable naming the bundle's secret keys (a CSV of names, never values):
/// the bundle reads their values from its own environment.
pub use bottle_core::catalog::SECRET_KEYS_ENV;

/// Shorter secret values are not scanned for (and the proxy says so when it starts).
pub const MIN_SECRET_LEN: usize = 8;

/// The pattern set, as data.
const PATTERNS: &str = include_str!("patterns.toml");

/// How a secret's value appeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    UrlEncoded,
    Hex,
    Base64,
    Base64Url,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::UrlEncoded => "URL-encoded",
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
        }
    }
}

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The value of the secret named `key`.
    Secret { key: String, encoding: Encoding },
    /// Text of a well-known credential format.
    Pattern { name: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Secret { key, encoding } => {
                write!(f, "the value of secret {key} ({})", encoding.as_str())
            }
            Finding::Pattern { name } => write!(f, "a credential of the form {name}"),
        }
    }
}

/// One entry of `patterns.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    pub name: String,
    pub regex: String,
    pub example: String,
    pub near_miss: String,
}

#[derive(Deserialize)]
struct PatternFile {
    pattern: Vec<Pattern>,
}

/// The well-known credential formats.
pub fn patterns() -> Vec<Pattern> {
    match toml::from_str::<PatternFile>(PATTERNS) {
        Ok(file) => file.pattern,
        Err(e) => panic!("patterns.toml is invalid: {}", e.message()),
    }
}

/// Looks for known secrets and credential formats in bytes.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Raw and base64 forms, exact.
    exact: Option<AhoCorasick>,
    exact_what: Vec<(usize, Encoding)>,
    /// Hex forms, ASCII case-insensitive.
    hex: Option<AhoCorasick>,
    /// Raw forms only, for the percent-decoded haystack.
    raw: Option<AhoCorasick>,
    /// Raw forms, ASCII case-insensitive, for names (DNS ignores case).
    raw_any_case: Option<AhoCorasick>,
    keys: Vec<String>,
    formats: RegexSet,
    format_names: Vec<String>,
}

impl Scanner {
    /// A scanner for `secrets` (key, value) and the pattern set. Values shorter than
    /// [`MIN_SECRET_LEN`] are skipped.
    pub fn new<I, K, V>(secrets: I) -> Scanner
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: AsRef<[u8]>,
    {
        let mut keys = Vec::new();
        let (mut exact, mut exact_what, mut hex, mut raw) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (key, value) in secrets {
            let value = value.as_ref();
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            let i = keys.len();
            keys.push(key.into());
            raw.push(value.to_vec());
            exact.push(value.to_vec());
            exact_what.push((i, Encoding::Raw));
            for (form, encoding) in [
                (base64_forms(value, STANDARD), Encoding::Base64),
                (base64_forms(value, URL_SAFE), Encoding::Base64Url),
            ] {
                for needle in form {
                    if !exact.contains(&needle) {
                        exact.push(needle);
                        exact_what.push((i, encoding));
                    }
                }
            }
            hex.push(hex_lower(value));
        }
        let build = |needles: &[Vec<u8>], case_insensitive: bool| {
            (!needles.is_empty()).then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(case_insensitive)
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(needles)
                    .expect("literal needles always build")
            })
        };
        let patterns = patterns();
        let formats = RegexSetBuilder::new(patterns.iter().map(|p| p.regex.as_str()))
            .unicode(false)
            .build()
            .expect("patterns.toml's regexes compile (its tests say so)");
        Scanner {
            exact: build(&exact, false),
            exact_what,
            hex: build(&hex, true),
            raw: build(&raw, false),
            raw_any_case: build(&raw, true),
            keys,
            formats,
            format_names: patterns.into_iter().map(|p| p.name).collect(),
        }
    }

    /// The keys whose values are looked for.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The first credential in `bytes`, if any.
    pub fn scan(&self, bytes: &[u8]) -> Option<Finding> {
        self.scan_one(bytes).or_else(|| {
            // Encodings wrap lines; a value split by the wrapping is whole again without them.
            let unwrapped = without_line_breaks(bytes);
            match unwrapped {
                Cow::Owned(b) => self.scan_one(&b),
                Cow::Borrowed(_) => None,
            }
        })
    }

    /// Scans several pieces (a target, header names and values) in one pass over their
    /// concatenation, joined by NUL bytes, which no target or header holds, so no piece runs
    /// into the next and no line-break pass is needed. Returns the finding and the index of the
    /// piece it is in; only a request that carries something pays for finding which.
    pub fn scan_pieces(&self, pieces: &[&[u8]]) -> Option<(Finding, usize)> {
        self.pieces_with(pieces, Scanner::scan)
    }

    /// [`Scanner::scan_pieces`] with [`Scanner::scan_name`]'s rule: case carries no meaning.
    pub fn scan_name_pieces(&self, pieces: &[&[u8]]) -> Option<(Finding, usize)> {
        self.pieces_with(pieces, Scanner::scan_name)
    }

    fn pieces_with(
        &self,
        pieces: &[&[u8]],
        scan: fn(&Scanner, &[u8]) -> Option<Finding>,
    ) -> Option<(Finding, usize)> {
        let mut joined = Vec::with_capacity(pieces.iter().map(|p| p.len() + 1).sum());
        for piece in pieces {
            joined.extend_from_slice(piece);
            joined.push(0);
        }
        let whole = scan(self, &joined)?;
        Some(
            pieces
                .iter()
                .enumerate()
                .find_map(|(i, piece)| Some((scan(self, piece)?, i)))
                .unwrap_or((whole, 0)),
        )
    }

    /// [`Scanner::scan`] for a host name, where case carries no meaning: a secret in any case
    /// is found (a name is looked up, and the lookup carries it to the name's servers).
    pub fn scan_name(&self, name: &[u8]) -> Option<Finding> {
        self.scan(name).or_else(|| {
            let m = self.raw_any_case.as_ref()?.find(name)?;
            Some(self.secret(m.pattern().as_usize(), Encoding::Raw))
        })
    }

    fn scan_one(&self, bytes: &[u8]) -> Option<Finding> {
        if let Some(m) = self.exact.as_ref().and_then(|ac| ac.find(bytes)) {
            let (i, encoding) = self.exact_what[m.pattern().as_usize()];
            return Some(self.secret(i, encoding));
        }
        if let Some(m) = self.hex.as_ref().and_then(|ac| ac.find(bytes)) {
            return Some(self.secret(m.pattern().as_usize(), Encoding::Hex));
        }
        if let Cow::Owned(decoded) = percent_decode(bytes) {
            if let Some(m) = self.raw.as_ref().and_then(|ac| ac.find(&decoded)) {
                return Some(self.secret(m.pattern().as_usize(), Encoding::UrlEncoded));
            }
            if let Some(f) = self.format(&decoded) {
                return Some(f);
            }
        }
        self.format(bytes)
    }

    fn secret(&self, i: usize, encoding: Encoding) -> Finding {
        Finding::Secret {
            key: self.keys[i].clone(),
            encoding,
        }
    }

    fn format(&self, bytes: &[u8]) -> Option<Finding> {
        self.formats
            .matches(bytes)
            .iter()
            .next()
            .map(|i| Finding::Pattern {
                name: self.format_names[i].clone(),
            })
    }
}

/// Reads the values of the keys named in [`SECRET_KEYS_ENV`] from this process's environment.
pub fn secrets_from_env() -> Vec<(String, String)> {
    std::env::var(SECRET_KEYS_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters of `value` at each of the three alignments it can have inside a longer
/// run: only the characters that depend on nothing but the value's own bits.
fn base64_forms(value: &[u8], alphabet: &[u8; 64]) -> Vec<Vec<u8>> {
    (0..3)
        .map(|offset| {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(value);
            let encoded = base64_unpadded(&bytes, alphabet);
            let first_bit = 8 * offset;
            let last_bit = 8 * bytes.len();
            let start = first_bit.div_ceil(6);
            let end = last_bit / 6;
            encoded[start..end.min(encoded.len())].to_vec()
        })
        .collect()
}

fn base64_unpadded(bytes: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize]);
        }
    }
    out
}

fn hex_lower(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .collect()
}

fn without_line_breaks(bytes: &[u8]) -> Cow<'_, [u8]> {
    if bytes.iter().any(|b| *b == b'\n' || *b == b'\r') {
        Cow::Owned(
            bytes
                .iter()
                .copied()
                .filter(|b| *b != b'\n' && *b != b'\r')
                .collect(),
        )
    } else {
        Cow::Borrowed(bytes)
    }
}

/// `%XX` decoded (`+` stays `+`); borrowed when there is nothing to decode.
fn percent_decode(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(bytes);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
