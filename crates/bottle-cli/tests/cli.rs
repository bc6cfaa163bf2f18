//! Tests of the `bottle` binary that need no engine: help that teaches, completions, exit
//! codes of an unreachable engine and of input refused before any engine is contacted.

mod common;

use common::{bottle, bottle_env};

#[track_caller]
fn check(args: &[&str], env: &[(&str, &str)], code: i32, stderr_names: &str) {
    let run = bottle_env(args, env);
    assert_eq!(
        run.code, code,
        "bottle {args:?} exits {code}\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains(stderr_names),
        "bottle {args:?}: stderr names {stderr_names:?}: {}",
        run.stderr
    );
}

#[test]
fn engine_down_exits_3() {
    let no_docker = [("DOCKER_HOST", "unix:///nonexistent/bottle-test/docker.sock")];
    let no_podman = [(
        "CONTAINER_HOST",
        "unix:///nonexistent/bottle-test/podman.sock",
    )];
    let neither = [no_docker[0], no_podman[0]];
    check(&["--runtime", "docker", "ps"], &no_docker, 3, "docker");
    check(
        &["--runtime", "docker", "up", "x"],
        &no_docker,
        3,
        "/nonexistent/bottle-test/docker.sock",
    );
    check(&["--runtime", "podman", "ps"], &no_podman, 3, "podman");
    check(
        &["--runtime", "podman", "env", "x"],
        &no_podman,
        3,
        "/nonexistent/bottle-test/podman.sock",
    );
    check(&["ps"], &neither, 3, "no container engine answered");
    check(&["doctor"], &neither, 3, "no container engine answers");
}

#[test]
fn errors_are_two_lines_with_a_hint() {
    let run = bottle(&["up", "Bad"]);
    assert_eq!(run.code, 2);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(lines[0].starts_with("error: slug:"), "{}", run.stderr);
    assert!(lines[1].starts_with("  hint: "), "{}", run.stderr);
}

#[test]
fn input_is_refused_before_any_engine_is_contacted() {
    // With no engine reachable, bad input is still exit 2, not 3.
    let none = [
        ("DOCKER_HOST", "unix:///nonexistent/bottle-test/docker.sock"),
        (
            "CONTAINER_HOST",
            "unix:///nonexistent/bottle-test/podman.sock",
        ),
    ];
    check(&["up", "Bad"], &none, 2, "slug");
    check(&["up", "ok", "-e", "=x"], &none, 2, "env");
    check(&["down", "ok", "Not/Ok"], &none, 2, "slug");
    check(&["--prefix", "Bad Prefix", "ps"], &none, 2, "--prefix");
    check(&["ps", "--output", "env"], &none, 2, "--output env");
    check(
        &["image", "load", "--archive", "/nonexistent/bottle.tar"],
        &none,
        2,
        "--archive",
    );
    check(&["down"], &none, 2, "<SLUGS>");
    check(&["down", "a", "--all"], &none, 2, "--all");
}

#[test]
fn help_teaches_with_examples() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["down", "--help"],
        vec!["ps", "--help"],
        vec!["env", "--help"],
        vec!["plan", "--help"],
        vec!["gc", "--help"],
        vec!["logs", "--help"],
        vec!["image", "load", "--help"],
        vec!["doctor", "--help"],
        vec!["completions", "--help"],
    ] {
        let run = bottle(&args).ok();
        assert!(
            run.stdout.contains("Example"),
            "bottle {args:?} has examples:\n{}",
            run.stdout
        );
    }
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let run = bottle(&["completions", shell]).ok();
        assert!(run.stdout.contains("bottle"), "{shell}: {}", run.stdout);
    }
}
