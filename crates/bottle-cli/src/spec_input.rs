//! Flags and bottle file -> `BottleSpec`. The file is the base; flags override its single
//! values and extend its lists (an `-e KEY` replaces the file's entry for the same key).
//!
//! Errors here are bad input (exit 2) and name the field; none quotes an env value, because
//! a `KEY=VALUE` entry may hold a secret.

use std::path::{Path, PathBuf};

use bottle_core::runtime::Mount;
use bottle_core::{BottleSpec, EnvEntry, LoopbackChoice};

use crate::cli::SpecArgs;
use crate::exit::Failure;
use crate::hint::Hint;

/// Builds the spec that `up` and `plan` use, and checks every rule that needs no engine, so
/// that bad input fails before any engine is contacted.
pub fn build(args: &SpecArgs) -> Result<BottleSpec, Failure> {
    let mut spec = match &args.file {
        Some(path) => read_file(path)?,
        None => BottleSpec::default(),
    };
    if let Some(slug) = &args.slug {
        spec.slug = slug.clone();
    }
    if let Some(image) = &args.image {
        spec.image = image.clone();
    }
    spec.egress_allow.extend(args.allow.iter().cloned());
    spec.git_upstreams.extend(
        args.git_upstreams
            .iter()
            .map(|arg| bottle_core::git::GitUpstreamSpec::parse_arg(arg)),
    );
    spec.supervise |= args.supervise;
    for raw in &args.env {
        let entry = parse_env(raw)?;
        spec.env.retain(|e| e.key() != entry.key());
        spec.env.push(entry);
    }
    for raw in &args.mounts {
        spec.mounts.push(parse_mount(raw)?);
    }
    if let Some(addr) = args.loopback {
        spec.loopback = Some(LoopbackChoice::Fixed(addr));
    }
    if let Some(pool) = args.loopback_pool {
        spec.loopback = Some(LoopbackChoice::Pool(pool));
    }
    if let Some(pool) = args.subnet_pool {
        spec.subnet_pool = Some(pool);
    }
    if let Some(memory) = args.memory {
        spec.limits.memory_bytes = Some(memory);
    }
    if let Some(pids) = args.pids {
        spec.limits.pids = Some(pids);
    }
    spec.daemons.extend(args.daemons.iter().cloned());

    spec.validate(&|key| std::env::var(key).ok())
        .map_err(|e| Failure::from(bottle_core::Error::from(e)))?;
    Ok(spec)
}

/// Reads and parses a bottle file. A parse error names the file, the line and column, and
/// the problem, but never quotes the file's text (it may hold `KEY=VALUE` secrets).
pub fn read_file(path: &Path) -> Result<BottleSpec, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::input(
            format!("bottle file {}: cannot read it: {e}", path.display()),
            "check the path given to -f/--file",
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        // A syntactically valid file failed on a value (a wrong type, say): name the key it
        // belongs to, which the parser's message does not.
        let key = e
            .span()
            .and_then(|span| key_at(&text, span.start))
            .map(|key| format!(" ({key})"))
            .unwrap_or_default();
        let at = e
            .span()
            .map(|span| {
                let (line, column) = line_column(&text, span.start);
                format!(" at line {line}, column {column}{key}")
            })
            .unwrap_or_default();
        Failure::input(
            format!(
                "bottle file {}{at}: {}",
                path.display(),
                redact_strings(e.message().trim_end())
            ),
            Hint::text("fix the file (see the bottle file format in ")
                .bottle("up --help")
                .then(")"),
        )
    })
}

/// Replaces each string value serde quotes in a message (`invalid type: string "TOKEN=..."`)
/// with `a string`: the value may be an env entry's secret. Key names (quoted with backticks)
/// stay.
fn redact_strings(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(QUOTED) {
        out.push_str(&rest[..start]);
        let value = &rest[start + QUOTED.len()..];
        // The value is Debug-quoted: `\"` and `\\` are escapes, the first bare `"` ends it.
        let mut end = value.len();
        let mut escaped = false;
        for (i, c) in value.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        out.push_str("a string");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// The dotted key (`limits.pids`, `mounts.read_only`) whose key or value holds byte `offset` of
/// a syntactically valid TOML text, found from the parser's spans. Only key names are read.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// Pushes the keys leading to `offset` below `table`; whether any was found.
fn find_in_table(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        // A table's own span may cover only its header, so look inside whatever the span.
        if key.span().contains(&offset)
            || find_in_value(value.get_ref(), offset, path)
            || value.span().contains(&offset)
        {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(value: &toml::de::DeValue<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    match value {
        toml::de::DeValue::Table(table) => find_in_table(table, offset, path),
        toml::de::DeValue::Array(items) => items.iter().any(|item| {
            find_in_value(item.get_ref(), offset, path) || item.span().contains(&offset)
        }),
        _ => false,
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    (line, column)
}

/// `KEY=VALUE` or a bare `KEY`. The error names the key only.
pub fn parse_env(raw: &str) -> Result<EnvEntry, Failure> {
    EnvEntry::parse(raw).map_err(|e| {
        // Core's message names the key only; an entry like `=VALUE` has none to name.
        let message = if raw.starts_with('=') {
            "env: an entry has no key before its = (use KEY=VALUE)".to_string()
        } else {
            e.to_string()
        };
        Failure::input(
            message,
            "use -e KEY=VALUE or -e KEY, with KEY of letters, digits and _, not starting with a digit",
        )
    })
}

/// `HOST:CONTAINER`, `HOST:CONTAINER:ro` or `HOST:CONTAINER:rw`.
pub fn parse_mount(raw: &str) -> Result<Mount, Failure> {
    let (paths, read_only) = if let Some(p) = raw.strip_suffix(":ro") {
        (p, true)
    } else if let Some(p) = raw.strip_suffix(":rw") {
        (p, false)
    } else {
        (raw, false)
    };
    match paths.split_once(':') {
        Some((host, container)) if !host.is_empty() && !container.is_empty() => Ok(Mount {
            host_path: PathBuf::from(host),
            container_path: PathBuf::from(container),
            read_only,
        }),
        _ => Err(Failure::input(
            format!("mounts: {raw:?} is not HOST:CONTAINER[:ro]"),
            "use --mount /abs/host/path:/abs/container/path, with :ro for read-only",
        )),
    }
}

/// A size in bytes: a number, optionally followed by k, m, g or t (binary units; `kib`, `mb`
/// and the like are accepted too).
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim().to_ascii_lowercase();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a size (use a number like 256m or 1g)"))?;
    let shift = match unit.trim_end_matches(['b', 'i']) {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{raw:?} has an unknown unit (use k, m, g or t)")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{raw:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_size(input: &str, expect: Result<u64, ()>) {
        assert_eq!(
            parse_size(input).map_err(drop),
            expect,
            "parse_size({input:?})"
        );
    }

    #[test]
    fn sizes() {
        check_size("1024", Ok(1024));
        check_size("256m", Ok(256 << 20));
        check_size("256M", Ok(256 << 20));
        check_size("1g", Ok(1 << 30));
        check_size("2GiB", Ok(2 << 30));
        check_size("64kb", Ok(64 << 10));
        check_size("", Err(()));
        check_size("m", Err(()));
        check_size("12x", Err(()));
        check_size("-5m", Err(()));
        check_size("99999999999999t", Err(()));
    }

    #[track_caller]
    fn check_mount(input: &str, expect: Option<(&str, &str, bool)>) {
        let got = parse_mount(input).ok().map(|m| {
            (
                m.host_path.display().to_string(),
                m.container_path.display().to_string(),
                m.read_only,
            )
        });
        let expect = expect.map(|(h, c, r)| (h.to_string(), c.to_string(), r));
        assert_eq!(got, expect, "parse_mount({input:?})");
    }

    #[test]
    fn mounts() {
        check_mount("/a:/b", Some(("/a", "/b", false)));
        check_mount("/a:/b:ro", Some(("/a", "/b", true)));
        check_mount("/a:/b:rw", Some(("/a", "/b", false)));
        check_mount("/a", None);
        check_mount(":/b", None);
        check_mount("/a:", None);
        check_mount("/a:ro", None);
    }

    #[test]
    fn env_errors_never_quote_values() {
        for raw in ["=s3cr3t", "1BAD=s3cr3t", "BAD KEY=s3cr3t", "A-B=s3cr3t"] {
            let e = parse_env(raw).expect_err(raw).to_string();
            assert!(e.contains("env"), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
        assert!(parse_env("=x").unwrap_err().to_string().contains("no key"));
    }

    #[test]
    fn string_values_are_redacted() {
        assert_eq!(
            redact_strings(r#"invalid type: string "A=s3cr3t", expected a sequence"#),
            "invalid type: a string, expected a sequence"
        );
        assert_eq!(
            redact_strings(r#"invalid value: string "a\"b=c", expected x; string "d""#),
            "invalid value: a string, expected x; a string"
        );
        assert_eq!(
            redact_strings("unknown field `bogus`, expected `slug`"),
            "unknown field `bogus`, expected `slug`"
        );
    }

    #[track_caller]
    fn check_key(text: &str, at: &str, expect: Option<&str>) {
        let offset = text.find(at).expect("marker in text");
        assert_eq!(
            key_at(text, offset).as_deref(),
            expect,
            "{text:?} at {at:?}"
        );
    }

    #[test]
    fn keys_of_values() {
        check_key("supervise = \"yes\"\n", "\"yes", Some("supervise"));
        check_key("slug = \"a\"\nenv = \"A=B\"\n", "\"A=B", Some("env"));
        check_key("env = [\"T=a=b\", 1]\n", "1]", Some("env"));
        check_key("limits = { pids = \"x\" }\n", "\"x", Some("limits.pids"));
        check_key("[limits]\npids = \"x\"\n", "\"x", Some("limits.pids"));
        check_key(
            "[limits]\nmemory_bytes = 1\n",
            "1\n",
            Some("limits.memory_bytes"),
        );
        check_key(
            "mounts = [{ host_path = \"/a\", read_only = \"no\" }]\n",
            "\"no",
            Some("mounts.read_only"),
        );
        check_key("env = [\n  \"A\", # a = b\n  2,\n]\n", "2,", Some("env"));
        check_key("# only = a comment\n", "a comment", None);
        check_key("x = \"\"\"a = b\"\"\"\ny = 1\n", "1\n", Some("y"));
        check_key(
            "limits = { memory_bytes = 99999999999999999999 }\n",
            "999",
            Some("limits.memory_bytes"),
        );
        check_key("[limits]\ncpus = 2\n", "cpus", Some("limits.cpus"));
        check_key("x = [\n", "[", None);
    }

    #[test]
    fn toml_errors_name_line_and_never_quote_text() {
        let dir = std::env::temp_dir().join(format!("bottle-cli-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "slug = \"a\"\nenv = [\"TOKEN=s3cr3t\"\nbogus").unwrap();
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        std::fs::write(&path, "slug = \"a\"\nenv = \"TOKEN=s3cr3t\"\n").unwrap();
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("(env)"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        std::fs::write(&path, "slug = \"a\"\nbogus = 1\n").unwrap();
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
