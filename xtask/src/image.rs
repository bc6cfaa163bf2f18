//! `cargo xtask image`: builds the reference bundle image archive (`target/bottle-sidecars.tar`,
//! `docker-archive` format) from the `bottle-sidecars` release binary, with no base image, no
//! registry and no engine: both Docker and Podman load it with `load -i`.
//!
//! The root filesystem is the binary, the git gate's programs (Debian's `git`, found with
//! `dpkg -L git` and installed with apt-get when missing: `git` itself for upload-pack,
//! receive-pack, fetch and push, and `git-remote-http` for HTTPS upstreams), the shared libraries
//! `ldd` says they all need (with the dynamic loader), the system's CA bundle for HTTPS
//! upstreams, `/etc/passwd` and `/etc/group` naming a non-root user, and an empty `/tmp`. Every
//! entry has a fixed owner and mtime, so the same inputs always give the same archive.
//!
//! The catalog label is whatever the built binary's `catalog` subcommand prints, so the image
//! declares exactly the daemons its binary provides and xtask needs no dependency on the crates.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::util::{cargo, root, run as sh, show};

/// The image's name as both engines' `load` report it (Podman adds `localhost/`).
pub const IMAGE: &str = "bottle-sidecars:latest";
/// Where the binary lives inside the image.
const BIN_PATH: &str = "usr/local/bin/bottle-sidecars";
/// The unprivileged user and group the bundle runs as (the "nonroot" id of distroless images).
const UID: u32 = 65532;
/// Every entry's mtime and the image's creation time: 2000-01-01, fixed for reproducibility.
const EPOCH: u64 = 946_684_800;
const CREATED: &str = "2000-01-01T00:00:00Z";
/// The fully static target, used only when the toolchain already has it (nothing is downloaded).
const MUSL: &str = "x86_64-unknown-linux-musl";
/// Where Debian installs git's programs; the image keeps the same paths, since git finds its
/// helpers (`git-remote-https`) in the exec path compiled into it.
const GIT_CORE: &str = "/usr/lib/git-core";
/// The CA bundle Debian's libcurl reads, for the git gate's HTTPS upstreams.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the archive (unless it is newer than the binary and this xtask) and returns its path.
/// `--force` rebuilds it anyway.
pub fn run(args: &[String]) -> Result<PathBuf, String> {
    let force = args.iter().any(|a| a == "--force");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let musl = musl_installed();
    let mut build = cargo();
    build.args(["build", "--release", "-p", "bottle-sidecars"]);
    if musl {
        build.args(["--target", MUSL]);
    }
    sh(&mut build)?;
    let bin = if musl {
        target_dir.join(MUSL).join("release/bottle-sidecars")
    } else {
        target_dir.join("release/bottle-sidecars")
    };
    archive(&bin, musl, force)
}

/// Packs `bin` (built for the musl target when `musl`) into the archive, unless the archive is
/// newer than the binary and this xtask (or `force`); returns its path.
fn archive(bin: &Path, musl: bool, force: bool) -> Result<PathBuf, String> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let archive = target_dir.join("bottle-sidecars.tar");

    let xtask = std::env::current_exe().ok();
    let fresh = !force
        && mtime(&archive).is_some_and(|a| {
            mtime(bin).is_some_and(|b| a > b)
                && xtask.as_deref().and_then(mtime).is_none_or(|x| a > x)
        });
    if fresh {
        println!("{}", archive.display());
        return Ok(archive);
    }

    let catalog = catalog_of(bin)?;
    let ports = ports_of(&catalog)?;
    let git = git_programs()?;
    let mut libs = if musl {
        Vec::new()
    } else {
        shared_libraries(bin)?
    };
    for program in &git {
        libs.extend(shared_libraries(program)?);
    }
    libs.sort();
    libs.dedup();

    let layer = layer(bin, &git, &libs)?;
    let diff_id = hex(&sha256(&layer));
    let config = config_json(&catalog, &ports, &diff_id);
    let config_id = hex(&sha256(config.as_bytes()));
    let manifest = format!(
        r#"[{{"Config":"{config_id}.json","RepoTags":["{IMAGE}"],"Layers":["{diff_id}/layer.tar"]}}]"#
    );

    let mut outer = Tar::default();
    outer.file(&format!("{config_id}.json"), 0o644, config.as_bytes())?;
    outer.dir(&format!("{diff_id}/"), 0o755)?;
    outer.file(&format!("{diff_id}/layer.tar"), 0o644, &layer)?;
    outer.file("manifest.json", 0o644, manifest.as_bytes())?;
    let bytes = outer.finish();

    // Written aside and renamed, so an interrupted build never leaves a truncated archive that
    // looks newer than the binary.
    let tmp = archive.with_extension("tar.tmp");
    fs::write(&tmp, &bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &archive)
        .map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))?;
    eprintln!(
        "image {IMAGE}: {} ({:.1} MiB, git, {} libraries{}), ports {ports:?}",
        archive.display(),
        bytes.len() as f64 / (1024.0 * 1024.0),
        libs.len(),
        if musl { ", static musl" } else { ", glibc" },
    );
    println!("{}", archive.display());
    Ok(archive)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Whether rustup reports the musl target installed; no rustup means no.
fn musl_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == MUSL)
        })
}

/// The catalog JSON the binary declares.
fn catalog_of(bin: &Path) -> Result<String, String> {
    let mut cmd = Command::new(bin);
    cmd.arg("catalog");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", show(&cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            show(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let json =
        String::from_utf8(out.stdout).map_err(|_| format!("{} printed non-UTF-8", show(&cmd)))?;
    Ok(json.trim().to_string())
}

/// The daemon ports in catalog JSON (`"port":N`), for `ExposedPorts`. A scan rather than a
/// parser keeps xtask free of dependencies; the catalog's JSON is compact and machine-made.
fn ports_of(catalog: &str) -> Result<Vec<u16>, String> {
    let ports: Vec<u16> = catalog
        .split("\"port\":")
        .skip(1)
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().map_err(|_| {
                format!("cannot read a port from the catalog {catalog}; is the binary current?")
            })
        })
        .collect::<Result<_, _>>()?;
    if ports.is_empty() {
        return Err(format!("the catalog {catalog} lists no daemon ports"));
    }
    Ok(ports)
}

/// The absolute paths of the shared objects `ldd` lists for `bin`, the loader included.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>, String> {
    let mut cmd = Command::new("ldd");
    cmd.arg(bin);
    let out = cmd.output().map_err(|e| {
        format!(
            "cannot run {}: {e}; install libc-bin (it provides ldd)",
            show(&cmd)
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{} failed ({}): {text}", show(&cmd), out.status));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            return Err(format!(
                "{} cannot resolve a library: {}",
                show(&cmd),
                line.trim()
            ));
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`;
        // the vDSO has no path and is provided by the kernel.
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim(),
            None => line.trim(),
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') && !libs.iter().any(|l: &PathBuf| l == Path::new(path)) {
            libs.push(PathBuf::from(path));
        }
    }
    libs.sort();
    Ok(libs)
}

/// Debian's `git` and `git-remote-http`, from the installed package's file list; the package
/// is installed with apt-get when it is missing.
fn git_programs() -> Result<Vec<PathBuf>, String> {
    let want = [
        format!("{GIT_CORE}/git"),
        format!("{GIT_CORE}/git-remote-http"),
    ];
    let listed = || {
        Command::new("dpkg")
            .args(["-L", "git"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let list = match listed() {
        Some(list) => list,
        None => {
            eprintln!("image: Debian's git is not installed; installing it with apt-get");
            sh(Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "git"]))
                .map_err(|e| {
                format!("{e}; the image needs Debian's git: run apt-get update and retry")
            })?;
            listed().ok_or("dpkg -L git lists nothing after installing git")?
        }
    };
    want.iter()
        .map(|w| {
            list.lines()
                .find(|l| l.trim() == w)
                .map(|l| PathBuf::from(l.trim()))
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    format!("the git package does not provide {w}; reinstall it (apt-get install --reinstall git)")
                })
        })
        .collect()
}

/// The image's one layer: every parent directory, then the files and links, in a fixed order.
fn layer(bin: &Path, git: &[PathBuf], libs: &[PathBuf]) -> Result<Vec<u8>, String> {
    let read = |p: &Path| fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let inside = |p: &Path| p.to_string_lossy().trim_start_matches('/').to_string();
    // Library paths are kept exactly as `ldd` printed them: the loader's path is baked into the
    // binary, and the loader searches the same directories inside the image as outside.
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![(BIN_PATH.into(), 0o755, read(bin)?)];
    for path in git.iter().chain(libs) {
        files.push((inside(path), 0o755, read(path)?));
    }
    match fs::read(CA_BUNDLE) {
        Ok(pem) => files.push((inside(Path::new(CA_BUNDLE)), 0o644, pem)),
        Err(e) => {
            return Err(format!(
                "cannot read {CA_BUNDLE}: {e}; install ca-certificates (the git gate's HTTPS \
                 upstreams are verified against it)"
            ))
        }
    }
    // The same programs under their other names, as links (no second copy): `git` on the
    // default PATH's neighbour /usr/bin, and the HTTPS helper.
    let links: Vec<(String, String)> = vec![
        ("usr/bin/git".into(), format!("{GIT_CORE}/git")),
        (
            format!("{}/git-remote-https", GIT_CORE.trim_start_matches('/')),
            "git-remote-http".into(),
        ),
    ];
    files.push((
        "etc/passwd".into(),
        0o644,
        format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{UID}:{UID}:nonroot:/tmp:/sbin/nologin\n")
            .into_bytes(),
    ));
    files.push((
        "etc/group".into(),
        0o644,
        format!("root:x:0:\nnonroot:x:{UID}:\n").into_bytes(),
    ));
    // Name lookups from /etc/hosts first, then DNS: what the engines' injected files expect.
    files.push((
        "etc/nsswitch.conf".into(),
        0o644,
        b"hosts: files dns\n".to_vec(),
    ));
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let mut dirs: Vec<String> = vec!["etc/".into(), "tmp/".into()];
    for path in files.iter().map(|f| &f.0).chain(links.iter().map(|l| &l.0)) {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            at += i + 1;
            dirs.push(path[..at].to_string());
        }
    }
    dirs.sort();
    dirs.dedup();

    let mut tar = Tar::default();
    for d in &dirs {
        // /tmp is the one writable place (a tmpfs under a read-only root), sticky like everywhere.
        tar.dir(d, if d == "tmp/" { 0o1777 } else { 0o755 })?;
    }
    for (path, mode, data) in &files {
        tar.file(path, *mode, data)?;
    }
    for (path, target) in &links {
        tar.symlink(path, target)?;
    }
    Ok(tar.finish())
}

/// The image config: user, entrypoint, ports, health check and the labels the planner reads.
fn config_json(catalog: &str, ports: &[u16], diff_id: &str) -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let exposed = ports
        .iter()
        .map(|p| format!(r#""{p}/tcp":{{}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let bin = format!("/{BIN_PATH}");
    const SECOND: u64 = 1_000_000_000;
    format!(
        concat!(
            r#"{{"architecture":"{arch}","os":"linux","created":"{created}","#,
            r#""config":{{"User":"{uid}:{uid}","Env":["PATH=/usr/local/bin"],"#,
            r#""Entrypoint":["{bin}","init"],"WorkingDir":"/","StopSignal":"SIGTERM","#,
            r#""ExposedPorts":{{{exposed}}},"#,
            r#""Healthcheck":{{"Test":["CMD","{bin}","health"],"Interval":{interval},"Timeout":{timeout},"StartPeriod":{start},"Retries":3}},"#,
            r#""Labels":{{"io.bottle.catalog":{catalog},"io.bottle.tmpfs":"/tmp","org.opencontainers.image.title":"bottle-sidecars"}}}},"#,
            r#""rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}},"#,
            r#""history":[{{"created":"{created}","created_by":"cargo xtask image"}}]}}"#
        ),
        arch = arch,
        created = CREATED,
        uid = UID,
        bin = bin,
        exposed = exposed,
        // Every check is an `exec` the engine runs; with a hundred bundles on two cores, checks
        // every 2 s saturated the host and timed out while the daemons served.
        interval = 10 * SECOND,
        timeout = 5 * SECOND,
        start = 10 * SECOND,
        catalog = json_string(catalog),
        diff_id = diff_id,
    )
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A ustar archive in memory: regular files and directories, owner root, fixed mtime.
#[derive(Default)]
struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    fn dir(&mut self, path: &str, mode: u32) -> Result<(), String> {
        self.header(path, mode, 0, b'5')
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        if target.len() > 99 {
            return Err(format!(
                "tar link target {target:?} is longer than 99 bytes"
            ));
        }
        self.header_with_link(path, 0o777, 0, b'2', target)
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), String> {
        self.header(path, mode, data.len() as u64, b'0')?;
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        Ok(())
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8) -> Result<(), String> {
        self.header_with_link(path, mode, size, kind, "")
    }

    fn header_with_link(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        kind: u8,
        link: &str,
    ) -> Result<(), String> {
        let mut h = [0u8; 512];
        // Long paths would need the prefix field; none of ours comes close.
        if path.len() > 99 {
            return Err(format!("tar path {path:?} is longer than 99 bytes"));
        }
        h[..path.len()].copy_from_slice(path.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
            let s = format!("{v:0w$o}", w = width - 1);
            h[at..at + width - 1].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, size);
        octal(&mut h, 136, 12, EPOCH);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        // The checksum is computed with its own field read as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.buf.extend_from_slice(&h);
        Ok(())
    }

    /// The archive with its two zero end blocks.
    fn finish(mut self) -> Vec<u8> {
        self.buf.extend([0u8; 1024]);
        self.buf
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (FIPS 180-4), for the layer and config digests the archive format names files by.
/// A few dozen lines here instead of a crate keeps xtask dependency-free.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut tail = data[data.len() - data.len() % 64..].to_vec();
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    let whole = &data[..data.len() - data.len() % 64];
    for block in whole.chunks_exact(64).chain(tail.chunks_exact(64)) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_sha(input: &[u8], expect: &str) {
        assert_eq!(hex(&sha256(input)), expect);
    }

    #[test]
    fn sha256_vectors() {
        check_sha(
            b"",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        check_sha(
            b"abc",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        );
        check_sha(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        );
        check_sha(
            &[b'a'; 1000],
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3",
        );
    }

    #[test]
    fn catalog_ports_and_escaping() {
        let catalog = r#"{"daemon":[{"name":"egress","port":9099},{"name":"s","port":9100}]}"#;
        assert_eq!(ports_of(catalog).unwrap(), [9099, 9100]);
        assert!(ports_of(r#"{"daemon":[]}"#).is_err());
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn tar_headers_have_valid_checksums_and_padding() {
        let mut tar = Tar::default();
        tar.dir("etc/", 0o755).unwrap();
        tar.file("etc/passwd", 0o644, b"x").unwrap();
        let bytes = tar.finish();
        assert_eq!(bytes.len(), 512 * 5);
        let h = &bytes[512..1024];
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        assert_eq!(stored, sum);
        assert_eq!(&h[..10], b"etc/passwd");
        assert_eq!(bytes[1024], b'x');
    }

    #[test]
    fn tar_links_name_their_target() {
        let mut tar = Tar::default();
        tar.symlink("usr/bin/git", "/usr/lib/git-core/git").unwrap();
        let bytes = tar.finish();
        assert_eq!(bytes.len(), 512 * 3);
        assert_eq!(bytes[156], b'2');
        assert_eq!(&bytes[157..178], b"/usr/lib/git-core/git");
        assert_eq!(&bytes[124..135], b"00000000000");
    }
}
