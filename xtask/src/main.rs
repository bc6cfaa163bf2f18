//! Project automation: `cargo xtask <task>`. Run `cargo xtask help` for the list.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod demo;
mod engines;
mod guide;
mod image;
mod tidy;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <task>

Tasks:
  ci        fmt check, tidy, clippy (warnings denied), engines, reference image, every test
  demo      one bottle end to end: engine, image, up, an allowed and a denied request, down
  bench     benchmarks: bring-up and teardown against the engine's raw API floor, and
            the egress proxy against direct, tinyproxy and squid, a service endpoint and the
            git gate against direct (bench engines|proxy|service|git: that part only)
  engines   make Docker and Podman reachable (install and start them when absent)
  guide     build the README's adapter guide as a crate outside the workspace and test it
  image     build the reference bundle image archive (target/bottle-sidecars.tar)
  tidy      rules the compiler does not check: bottle-core free of engine SDKs and HTTP,
            no printing in libraries, no paths of a developer's machine, module docs
  help      this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "ci" => ci::run(rest),
        "demo" => demo::run(rest),
        "bench" => bench::run(rest),
        "engines" => engines::run(rest),
        "guide" => guide::run_guide(rest),
        "image" => image::run(rest).map(drop),
        "tidy" => tidy::run(rest),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown task {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}
