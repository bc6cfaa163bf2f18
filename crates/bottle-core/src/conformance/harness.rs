//! What every real-engine test binary shares: the pools each binary may use, chosen in one
//! table ([`POOLS`]) so that binaries running at once on one engine never collide; connecting
//! (a failure in CI, a skip with one line elsewhere); the reference image and the SIGTERM-deaf
//! fixture image, each loaded once per binary and engine; and the [`Fixture`] of a binary.
//!
//! An adapter's tests declare their row with [`adapter_test_harness!`](crate::adapter_test_harness)
//! (or call [`setup`] with the result of connecting their runtime); the CLI's tests take their
//! pools from [`pools`].

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::{ensure_reference_image, ensure_sigterm_deaf_image, require_engine, Fixture};
use crate::runtime::{ContainerRuntime, LogOptions};

/// The pools and object-name prefix of one test binary on one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuitePools {
    /// The test binary (or group of binaries that never run at once).
    pub suite: &'static str,
    /// `docker` or `podman`.
    pub engine: &'static str,
    /// The prefix of every object the binary creates.
    pub prefix: &'static str,
    /// A private /16 of bottle subnets.
    pub subnet_pool: &'static str,
    /// A /16 of 127.0.0.0/8 for the bottles' loopback addresses.
    pub loopback_pool: &'static str,
}

impl SuitePools {
    /// The conformance fixture of this suite, with the images it names present.
    pub fn fixture(&self, image: String, sigterm_deaf_image: String) -> Fixture {
        Fixture {
            image,
            prefix: self.prefix.into(),
            subnet_pool: self
                .subnet_pool
                .parse()
                .expect("the table's pools are valid"),
            loopback_pool: self
                .loopback_pool
                .parse()
                .expect("the table's pools are valid"),
            sigterm_deaf_image,
        }
    }

    /// The tag of this suite's SIGTERM-deaf image (see [`ensure_sigterm_deaf_image`]).
    pub fn sigterm_deaf_tag(&self) -> String {
        format!("{}-sleep:test", self.prefix)
    }
}

const fn suite(
    suite: &'static str,
    engine: &'static str,
    prefix: &'static str,
    subnet_pool: &'static str,
    loopback_pool: &'static str,
) -> SuitePools {
    SuitePools {
        suite,
        engine,
        prefix,
        subnet_pool,
        loopback_pool,
    }
}

/// Every real-engine test binary's pools, one row per binary and engine. Binaries of one crate
/// run one after another, but crates' binaries (and other users of the engine) may run at once:
/// no two rows share a pool. Also reserved elsewhere: 10.213/16, 10.214/16, 127.77/16 and
/// 127.78/16 (core's and the in-memory suites), 10.220/16, 10.230/16, 127.90/16, 127.95/16 (the
/// sidecars' tests and the benchmark), 10.251.0.0/21 and 127.111.0.0/28 (the CLI's pool
/// exhaustion case).
pub const POOLS: &[SuitePools] = &[
    suite(
        "adapter",
        "docker",
        "bt-docker",
        "10.215.0.0/16",
        "127.79.0.0/16",
    ),
    suite(
        "adapter",
        "podman",
        "bt-podman",
        "10.216.0.0/16",
        "127.80.0.0/16",
    ),
    suite(
        "cli",
        "docker",
        "bt-cli-docker",
        "10.217.0.0/16",
        "127.81.0.0/16",
    ),
    suite(
        "cli",
        "podman",
        "bt-cli-podman",
        "10.218.0.0/16",
        "127.82.0.0/16",
    ),
    suite(
        "cli-concurrency",
        "docker",
        "bt-conc-docker",
        "10.240.0.0/16",
        "127.100.0.0/16",
    ),
    suite(
        "cli-concurrency",
        "podman",
        "bt-conc-podman",
        "10.241.0.0/16",
        "127.101.0.0/16",
    ),
    suite(
        "cli-crashes",
        "docker",
        "bt-crash-docker",
        "10.242.0.0/16",
        "127.102.0.0/16",
    ),
    suite(
        "cli-crashes",
        "podman",
        "bt-crash-podman",
        "10.243.0.0/16",
        "127.103.0.0/16",
    ),
    suite(
        "cli-scale",
        "docker",
        "bt-scale-docker",
        "10.244.0.0/16",
        "127.104.0.0/16",
    ),
    suite(
        "cli-scale",
        "podman",
        "bt-scale-podman",
        "10.245.0.0/16",
        "127.105.0.0/16",
    ),
    suite(
        "cli-security",
        "docker",
        "bt-sec-docker",
        "10.246.0.0/16",
        "127.106.0.0/16",
    ),
    suite(
        "cli-security",
        "podman",
        "bt-sec-podman",
        "10.247.0.0/16",
        "127.107.0.0/16",
    ),
    suite(
        "cli-bad-input",
        "docker",
        "bt-bad-docker",
        "10.248.0.0/16",
        "127.108.0.0/16",
    ),
    suite(
        "cli-bad-input",
        "podman",
        "bt-bad-podman",
        "10.249.0.0/16",
        "127.109.0.0/16",
    ),
    suite(
        "cli-snapshots",
        "docker",
        "bt-snap-docker",
        "10.250.0.0/16",
        "127.110.0.0/16",
    ),
    suite(
        "cli-snapshots",
        "podman",
        "bt-snap-podman",
        "10.254.0.0/16",
        "127.114.0.0/16",
    ),
    suite(
        "cli-engine-restart",
        "docker",
        "bt-restart-docker",
        "10.252.0.0/16",
        "127.112.0.0/16",
    ),
    suite(
        "cli-engine-restart",
        "podman",
        "bt-restart-podman",
        "10.253.0.0/16",
        "127.113.0.0/16",
    ),
    suite(
        "cli-loopback",
        "docker",
        "bt-lo-docker",
        "10.219.0.0/16",
        "127.83.0.0/16",
    ),
    // The in-memory engine through the CLI library: its loopback addresses are real listeners.
    suite(
        "cli-snapshots",
        "memory",
        "bt-snap-memory",
        "10.255.0.0/16",
        "127.115.0.0/16",
    ),
];

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The row of [`POOLS`] for `suite` on `engine`; a compile-time error in a `const` when there
/// is none.
pub const fn pools(suite: &str, engine: &str) -> SuitePools {
    let mut i = 0;
    while i < POOLS.len() {
        if same(POOLS[i].suite, suite) && same(POOLS[i].engine, engine) {
            return POOLS[i];
        }
        i += 1;
    }
    panic!("no row in bottle_core::conformance::harness::POOLS for this suite and engine")
}

/// A line on the test's stderr directly, past libtest's capture, so a run's output shows what
/// ran against which engine.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The runtime when the engine answers; in CI a panic naming the problem; elsewhere `None`
/// after a line saying that `test` is skipped and how to run it.
pub fn connect<R, E: std::fmt::Display>(
    suite: &SuitePools,
    test: &str,
    connected: Result<R, E>,
) -> Option<R> {
    let rt = require_engine(suite.engine, connected);
    if rt.is_none() {
        say(&format!(
            "{}: {test} skipped: the engine does not answer (start it to run the test)",
            suite.engine
        ));
    }
    rt
}

/// `engine/image` pairs this process has made sure of.
fn ensured() -> &'static tokio::sync::Mutex<BTreeSet<String>> {
    static ENSURED: OnceLock<tokio::sync::Mutex<BTreeSet<String>>> = OnceLock::new();
    ENSURED.get_or_init(Default::default)
}

/// The reference image on the suite's engine, loaded from its archive once per process (tests
/// run in parallel; see [`ensure_reference_image`]).
pub async fn reference_image(
    rt: &dyn ContainerRuntime,
    suite: &SuitePools,
    manifest_dir: &str,
) -> String {
    let mut done = ensured().lock().await;
    let image = crate::lifecycle::DEFAULT_IMAGE;
    if done.insert(format!("{}/{image}", suite.engine)) {
        ensure_reference_image(rt, manifest_dir).await;
    }
    image.to_string()
}

/// The suite's SIGTERM-deaf image on its engine, built under `tmp_dir` and loaded once per
/// process when missing (see [`ensure_sigterm_deaf_image`]).
pub async fn sigterm_deaf_image(
    rt: &dyn ContainerRuntime,
    suite: &SuitePools,
    tmp_dir: &Path,
) -> String {
    let tag = suite.sigterm_deaf_tag();
    let mut done = ensured().lock().await;
    if done.insert(format!("{}/{tag}", suite.engine)) {
        ensure_sigterm_deaf_image(rt, &tag, tmp_dir).await;
    }
    tag
}

/// The `docker save` archive of the suite's SIGTERM-deaf image, written under `tmp_dir` once
/// per process (see [`super::sigterm_deaf_archive`]).
pub fn sigterm_deaf_archive(suite: &SuitePools, tmp_dir: &Path) -> PathBuf {
    static ARCHIVES: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let tag = suite.sigterm_deaf_tag();
    let mut archives = ARCHIVES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = archives.iter().find(|(t, _)| *t == tag) {
        return path.clone();
    }
    let path = super::sigterm_deaf_archive(&tag, tmp_dir);
    archives.push((tag, path.clone()));
    path
}

/// Connects (as [`connect`] says), makes sure of both images, and returns the runtime as the
/// lifecycle takes it, the runtime itself, and the suite's fixture. `manifest_dir` finds the
/// reference archive (the test crate's `CARGO_MANIFEST_DIR`); `tmp_dir` holds built archives
/// (its `CARGO_TARGET_TMPDIR`).
pub async fn setup<R, E>(
    suite: &SuitePools,
    test: &str,
    connected: Result<R, E>,
    manifest_dir: &str,
    tmp_dir: &Path,
) -> Option<(Arc<dyn ContainerRuntime>, R, Fixture)>
where
    R: ContainerRuntime + Clone + 'static,
    E: std::fmt::Display,
{
    let rt = connect(suite, test, connected)?;
    let image = reference_image(&rt, suite, manifest_dir).await;
    let deaf = sigterm_deaf_image(&rt, suite, tmp_dir).await;
    let fixture = suite.fixture(image, deaf);
    Some((Arc::new(rt.clone()), rt, fixture))
}

/// Declares, in an adapter's test module, what its test binaries share: `SUITE` (its row
/// `adapter` of [`POOLS`]), `engine(test)` (connect, or skip as [`connect`] says), `setup(test)`
/// (as [`setup`] says), `sigterm_deaf_image(&rt)` and `sigterm_deaf_archive()`. The arguments:
/// the engine's name, the runtime type, and the expression that connects it.
///
/// ```ignore
/// bottle_core::adapter_test_harness!("docker", DockerRuntime, DockerRuntime::connect());
/// ```
#[macro_export]
macro_rules! adapter_test_harness {
    ($engine:literal, $rt:ty, $connect:expr) => {
        /// This binary's pools and prefix.
        pub const SUITE: $crate::conformance::harness::SuitePools =
            $crate::conformance::harness::pools("adapter", $engine);

        fn tmp() -> &'static ::std::path::Path {
            ::std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        }

        /// The engine, or `None` after a line saying `test` is skipped (in CI a failure).
        pub async fn engine(test: &str) -> Option<$rt> {
            $crate::conformance::harness::connect(&SUITE, test, $connect.await)
        }

        /// The engine (as the lifecycle takes it and as itself) and the fixture, with both
        /// images present.
        pub async fn setup(
            test: &str,
        ) -> Option<(
            ::std::sync::Arc<dyn $crate::ContainerRuntime>,
            $rt,
            $crate::conformance::Fixture,
        )> {
            $crate::conformance::harness::setup(
                &SUITE,
                test,
                $connect.await,
                env!("CARGO_MANIFEST_DIR"),
                tmp(),
            )
            .await
        }

        /// The SIGTERM-deaf image on the engine; returns its tag.
        pub async fn sigterm_deaf_image(rt: &$rt) -> String {
            $crate::conformance::harness::sigterm_deaf_image(rt, &SUITE, tmp()).await
        }

        /// The `docker save` archive of the SIGTERM-deaf image.
        pub fn sigterm_deaf_archive() -> ::std::path::PathBuf {
            $crate::conformance::harness::sigterm_deaf_archive(&SUITE, tmp())
        }
    };
}

/// The lines `rt.logs` gives for `container`: every one, or with `stop_after` only that many
/// (the sink then asks the stream to stop, which the contract says ends it). Panics, naming
/// the container, when the call fails.
pub async fn log_lines(
    rt: &dyn ContainerRuntime,
    container: &str,
    options: LogOptions,
    stop_after: Option<usize>,
) -> Vec<String> {
    let mut lines = Vec::new();
    rt.logs(container, options, &mut |line| {
        lines.push(line);
        stop_after.is_none_or(|n| lines.len() < n)
    })
    .await
    .unwrap_or_else(|e| panic!("logs of {container}: {e}"));
    lines
}

#[cfg(test)]
mod tests {
    use ipnet::Ipv4Net;

    use super::*;

    #[test]
    fn no_two_suites_share_a_pool_or_a_prefix() {
        let nets = |f: fn(&SuitePools) -> &str| -> Vec<(Ipv4Net, &str)> {
            POOLS
                .iter()
                .map(|p| (f(p).parse().expect("a valid pool"), p.suite))
                .collect()
        };
        for (kind, pools) in [
            ("subnet", nets(|p| p.subnet_pool)),
            ("loopback", nets(|p| p.loopback_pool)),
        ] {
            for (i, (a, sa)) in pools.iter().enumerate() {
                for (b, sb) in &pools[i + 1..] {
                    assert!(
                        !a.contains(b) && !b.contains(a),
                        "{kind} pools {a} ({sa}) and {b} ({sb}) overlap"
                    );
                }
                let loopback: Ipv4Net = "127.0.0.0/8".parse().unwrap();
                assert_eq!(kind == "loopback", loopback.contains(a), "{a} of {sa}");
                assert!(kind == "loopback" || a.addr().is_private(), "{a} of {sa}");
            }
        }
        let prefixes: BTreeSet<&str> = POOLS.iter().map(|p| p.prefix).collect();
        assert_eq!(prefixes.len(), POOLS.len(), "prefixes are distinct");
    }

    #[test]
    fn lookup_finds_the_row() {
        const P: SuitePools = pools("cli-bad-input", "podman");
        assert_eq!(P.subnet_pool, "10.249.0.0/16");
        assert_eq!(pools("adapter", "docker").prefix, "bt-docker");
        assert!(std::panic::catch_unwind(|| pools("nonesuch", "docker")).is_err());
    }
}
