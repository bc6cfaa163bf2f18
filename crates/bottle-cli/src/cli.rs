//! The command line: argument types only (clap derive). Parsing of values that need more than
//! a type (env entries, mounts, sizes) lives in `spec_input`, where errors can be kept free of
//! secret values.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;

/// Which container engine to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Docker, Engine::Podman];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// For people: tables and short sentences.
    #[default]
    Text,
    /// For scripts: stable, documented field names.
    Json,
    /// `export KEY='value'` lines for `eval` (only `up` and `env`).
    Env,
}

const ABOUT: &str = "Bring a sandboxed agent's sidecar bundle up and down on Docker or Podman";

const AFTER_HELP: &str = "\
Examples:
  bottle up demo --allow example.com        bring bottle `demo` up, allowing egress to example.com
  eval \"$(bottle env demo --output env)\"    hand its proxy variables to this shell
  bottle ps                                 list bottles, their state and addresses
  bottle down demo                          tear it down (idempotent)
  bottle doctor                             which engines answer, and what to fix

Exit codes: 0 ok, 1 failure, 2 bad input (nothing was touched), 3 no engine answered.
Engines: Docker is found as the docker CLI finds it (--context, DOCKER_HOST, DOCKER_CONTEXT, the
current context of ~/.docker/config.json, the default socket; tcp:// with TLS and ssh:// too);
CONTAINER_HOST is honoured for Podman. A Docker engine on another host is refused.";

#[derive(Debug, Parser)]
#[command(name = "bottle", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The engine to use [default: the first that answers, Docker then Podman]
    #[arg(long, global = true, env = "BOTTLE_RUNTIME", value_enum)]
    pub runtime: Option<Engine>,

    /// The Docker context to use (as `docker --context`; implies --runtime docker) [default:
    /// DOCKER_HOST, else DOCKER_CONTEXT, else the docker CLI's current context]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Output format
    #[arg(long, short = 'o', global = true, value_enum, default_value_t)]
    pub output: Output,

    /// No progress spinners and no informational lines on stderr
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Diagnostics on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides)
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Resource-name prefix: bottles of different prefixes never see each other
    #[arg(
        long,
        global = true,
        env = "BOTTLE_PREFIX",
        default_value = crate::exit::DEFAULT_PREFIX,
        value_name = "NAME"
    )]
    pub prefix: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring a bottle up and print the agent's endpoints
    #[command(after_help = UP_HELP)]
    Up(SpecArgs),

    /// Tear bottles down (idempotent: a bottle that is not up is fine)
    #[command(after_help = "\
Examples:
  bottle down demo             remove bottle `demo` (its bundle, then its network)
  bottle down one two          several at once
  bottle down --all            every bottle of this --prefix")]
    Down {
        /// Slugs of the bottles to remove
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        slugs: Vec<String>,
        /// Every bottle of this --prefix
        #[arg(long)]
        all: bool,
    },

    /// List the bottles on the engine
    #[command(after_help = "\
Examples:
  bottle ps                    slug, state, health, loopback, subnet, daemons, age
  bottle ps -o json            the same as a JSON array, for scripts")]
    Ps,

    /// Print the agent's variables of a running bottle, re-read from the engine
    #[command(after_help = "\
Refuses a bottle that is stopped, unhealthy, or whose agent-facing daemon does not answer.

Examples:
  bottle env demo                      a table of variables and endpoints
  eval \"$(bottle env demo -o env)\"     export HTTPS_PROXY, HTTP_PROXY, NO_PROXY, ... into this shell
  bottle env demo -o json              the same fields as `bottle up -o json`")]
    Env {
        /// The bottle's slug
        slug: String,
    },

    /// Show what `up` would create, without creating anything
    #[command(after_help = "\
Examples:
  bottle plan demo --allow example.com --supervise
  bottle plan -f bottle.toml -o json   the full plan (names, subnet, ports, labels, env keys)

Values of bare env keys are never part of a plan: only their keys are.")]
    Plan(SpecArgs),

    /// Remove our objects that no complete bottle owns (after a crash)
    #[command(after_help = "\
Removes a network without its bundle, a bundle without its network, and a bundle that is not
running. A running bundle whose daemon does not answer is left alone (its init restarts the
daemon); `bottle down` removes it.

Examples:
  bottle gc --dry-run          list what would be removed
  bottle gc                    remove it")]
    Gc {
        /// Only list what would be removed
        #[arg(long)]
        dry_run: bool,
    },

    /// Print the bundle's output (every daemon's lines, each with its daemon's prefix)
    #[command(after_help = "\
Examples:
  bottle logs demo --tail 50
  bottle logs demo --follow    keep printing until the bundle stops (Ctrl-C to stop reading)")]
    Logs {
        /// The bottle's slug
        slug: String,
        /// Keep printing new output until the bundle stops
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines
        #[arg(long, short = 'n', value_name = "N")]
        tail: Option<usize>,
    },

    /// Manage the bundle image
    #[command(subcommand)]
    Image(ImageCommand),

    /// Check which engines answer, their versions and sockets, and the reference image
    #[command(after_help = "\
Exit code 0 when at least one engine answers, 3 when none does.

Example:
  bottle doctor")]
    Doctor,

    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  bottle completions bash > /etc/bash_completion.d/bottle
  bottle completions zsh > \"${fpath[1]}/_bottle\"")]
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load the reference image archive into the engine
    #[command(after_help = "\
The archive is the first that exists of:
  1. --archive PATH
  2. $BOTTLE_IMAGE_ARCHIVE
  3. target/bottle-sidecars.tar in the current directory or any parent
  4. bottle-sidecars.tar in the parent of the executable's directory
     (target/debug/bottle -> target/bottle-sidecars.tar)
Build it with `cargo xtask image`.

Example:
  bottle image load --runtime podman")]
    Load {
        /// The image archive (`docker save` format)
        #[arg(long, value_name = "PATH")]
        archive: Option<PathBuf>,
    },
}

const UP_HELP: &str = "\
Flags override the bottle file's values and add to its lists. A bare `-e KEY` takes its value
from this process's environment when the bundle is created; that value is never printed,
logged, labelled or stored.

Bottle file (TOML, every key optional):
  slug = \"demo\"
  image = \"bottle-sidecars:latest\"
  egress_allow = [\"example.com\", \"*.example.org:443\"]
  git_upstreams = [\"https://git.example.com/org/lib.git\"]  # or tables, below
  supervise = true
  daemons = []
  env = [\"LOG_LEVEL=debug\", \"API_TOKEN\"]
  mounts = [{ host_path = \"/srv/data\", container_path = \"/data\", read_only = true }]
  loopback = { pool = \"127.77.0.0/16\" }      # or { fixed = \"127.0.0.9\" }
  subnet_pool = \"10.213.0.0/16\"
  limits = { memory_bytes = 268435456, pids = 256 }
  [[git_upstreams]]                        # instead of the list above: one table each
  name = \"app\"                             # the agent clones $GIT_GATE_URL/app.git
  url = \"https://git.example.com/org/app.git\"
  token = \"APP_GIT_TOKEN\"                  # bare env key: the gate's credential upstream
  push = [\"refs/heads/agent/*\"]            # default: any branch but the default; no tags
  # ca_file = \"/etc/ssl/private-ca.pem\"    # insecure_http = true allows http://

Examples:
  bottle up demo --allow example.com --allow '*.github.com:443'
  bottle up -f bottle.toml -e API_TOKEN --memory 256m
  bottle up demo -o json | jq -r .env.HTTPS_PROXY
  eval \"$(bottle up demo -q -o env)\"";

/// What `up` and `plan` take: a bottle file and/or flags.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The bottle's slug: 1-40 of a-z, 0-9 and - (may come from the bottle file instead)
    pub slug: Option<String>,

    /// A TOML bottle file; flags override and extend it
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// The bundle image [default: bottle-sidecars:latest]
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,

    /// Allow egress to this pattern (`example.com`, `*.example.com:443`); repeatable
    #[arg(long = "allow", value_name = "PATTERN")]
    pub allow: Vec<String>,

    /// A git upstream: an https URL, optionally named (NAME=URL; default name: the URL's
    /// last path segment without .git); any turns the git gate on; repeatable
    #[arg(long = "git-upstream", value_name = "[NAME=]URL")]
    pub git_upstreams: Vec<String>,

    /// Run the supervise daemon
    #[arg(long)]
    pub supervise: bool,

    /// An environment entry of the bundle: KEY=VALUE, or a bare KEY read from this
    /// environment (never shown); repeatable
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE|KEY")]
    pub env: Vec<String>,

    /// A bind mount: HOST:CONTAINER or HOST:CONTAINER:ro (absolute paths); repeatable
    #[arg(long = "mount", value_name = "HOST:CONTAINER[:ro]")]
    pub mounts: Vec<String>,

    /// Publish on exactly this loopback address (inside 127.0.0.0/8)
    #[arg(long, value_name = "ADDR", conflicts_with = "loopback_pool")]
    pub loopback: Option<Ipv4Addr>,

    /// Take a free loopback address from this pool [default: 127.77.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub loopback_pool: Option<Ipv4Net>,

    /// Take the bottle's /24 subnet from this private pool [default: 10.213.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub subnet_pool: Option<Ipv4Net>,

    /// Memory limit of the bundle: bytes, or with a suffix k, m, g (binary) [default: 128m]
    #[arg(long, value_name = "SIZE", value_parser = crate::spec_input::parse_size)]
    pub memory: Option<u64>,

    /// Process limit of the bundle [default: 256]
    #[arg(long, value_name = "N")]
    pub pids: Option<i64>,

    /// Also run this daemon (one the catalog marks as requested); repeatable
    #[arg(long = "daemon", value_name = "NAME")]
    pub daemons: Vec<String>,
}

impl Command {
    /// The command's words as typed (`image load`), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Up(_) => "up",
            Command::Down { .. } => "down",
            Command::Ps => "ps",
            Command::Env { .. } => "env",
            Command::Plan(_) => "plan",
            Command::Gc { .. } => "gc",
            Command::Logs { .. } => "logs",
            Command::Image(ImageCommand::Load { .. }) => "image load",
            Command::Doctor => "doctor",
            Command::Completions { .. } => "completions",
        }
    }
}
