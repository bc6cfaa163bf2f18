//! `cargo xtask bench proxy` runs this (`cargo bench -p bottle-bench --bench proxy -- ...`): the
//! proxy part, bottle's egress proxy against direct, tinyproxy and squid on loopback; and as
//! `__upstream` the upstream they all reach, in a process of its own.

// A benchmark's output is its report.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use bottle_bench::proxy::{self, upstream, Options};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench proxy: cannot start the async runtime: {e}");
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
