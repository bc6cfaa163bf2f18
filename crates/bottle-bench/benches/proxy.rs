//! `cargo xtask bench proxy` runs this (`cargo bench -p bottle-bench --bench proxy -- ...`): the
//! proxy part, bottle's egress proxy against direct, tinyproxy and squid on loopback; and as
//! `__upstream` the upstream they all reach, in a process of its own.

// A benchmark's output is its report.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use bottle_bench::proxy::{self, upstream, Options};

fn main() -> ExitCode {
    let args = bottle_bench::args::from_env();
    let rt = match bottle_bench::args::runtime("bench proxy") {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if args.first().map(String::as_str) == Some("__upstream") {
        return match rt.block_on(upstream::serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench proxy upstream: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", proxy::USAGE);
        return ExitCode::SUCCESS;
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(proxy::drive(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
