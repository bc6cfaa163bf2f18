//! `bottle doctor`: which engines answer, their versions and sockets, how each endpoint was
//! chosen and whose host it is on, whether the engine is rootless, whether the reference image
//! is present, and what to do about each problem.

use bottle_core::lifecycle::DEFAULT_IMAGE;
use serde::Serialize;

use crate::cli::{Engine, Output};
use crate::commands::Context;
use crate::exit::Failure;
use crate::output;
use crate::runtime::{self, Purpose, Reach, Unusable};

/// One engine's findings.
#[derive(Debug, Serialize)]
struct Report {
    engine: &'static str,
    /// Whether the engine answered.
    answers: bool,
    version: Option<String>,
    api_version: Option<String>,
    /// The socket or URL the adapter used (or tried).
    endpoint: Option<String>,
    /// How the endpoint was chosen (`--context ci`, `DOCKER_HOST`, `default socket`, ...);
    /// `null` where the adapter does not say.
    chosen_by: Option<String>,
    /// `"local"` (a socket of this host), `"this-host"` (tcp:// or ssh:// to an address of this
    /// host), `"remote"` (another host: refused by every other command); `null` where unknown.
    locality: Option<&'static str>,
    /// Whether the engine is on another host; `null` where unknown.
    remote: Option<bool>,
    /// Whether the engine runs rootless; `null` where unknown.
    rootless: Option<bool>,
    /// Whether the engine applies a bundle's memory and pids limits (`false`: rootless Podman
    /// on a cgroup v1 host, where `up` refuses bundles); `null` where not asked (Docker).
    applies_limits: Option<bool>,
    /// How bottles are published on this host's loopback: `"per-bottle"` or `"shared"` (the
    /// pool's addresses do not exist here; see `bottle_core::loopback`); `null` when the
    /// setting is invalid (a problem says so).
    loopback_mode: Option<&'static str>,
    /// Why that mode: what was tested, or who said so.
    loopback_reason: Option<String>,
    /// Whether the reference image is present; `null` when the engine does not answer.
    image_present: Option<bool>,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct Problem {
    problem: String,
    hint: String,
}

impl Report {
    fn reach(&mut self, reach: &Reach) {
        self.endpoint = Some(reach.endpoint.clone());
        self.chosen_by = Some(reach.chosen_by.clone());
        self.locality = Some(reach.locality);
        self.remote = Some(reach.locality == "remote");
        self.rootless = reach.rootless;
        self.applies_limits = reach.applies_limits;
    }
}

async fn check(engine: Engine, context: Option<&str>) -> Report {
    let name = engine.name();
    let mut report = Report {
        engine: name,
        answers: false,
        version: None,
        api_version: None,
        endpoint: None,
        chosen_by: None,
        locality: None,
        remote: None,
        rootless: None,
        applies_limits: None,
        loopback_mode: None,
        loopback_reason: None,
        image_present: None,
        problems: Vec::new(),
    };
    // A property of this host, the same for every engine whose ports are on its loopback.
    match bottle_core::loopback::detect(&bottle_core::Pools::default().loopback) {
        Ok(detected) => {
            report.loopback_mode = Some(detected.mode.as_str());
            if let Some(warning) = detected.warning() {
                report.problems.push(Problem {
                    problem: format!("bottles would share one loopback address: {warning}"),
                    hint: "alias the pool's addresses on the loopback interface, or accept the shared mode".into(),
                });
            }
            report.loopback_reason = Some(detected.reason);
        }
        Err(e) => report.problems.push(Problem {
            problem: e,
            hint: format!(
                "set {} to per-bottle, shared or auto, or unset it",
                bottle_core::loopback::MODE_ENV
            ),
        }),
    }
    let purpose = Purpose {
        context,
        refuse_remote: false,
        facts: true,
    };
    match runtime::connect(engine, purpose).await {
        Ok(c) => {
            report.answers = true;
            if let Some(reach) = &c.reach {
                report.reach(reach);
                if reach.applies_limits == Some(false) {
                    report.problems.push(Problem {
                        problem: format!("the {name} engine does not apply memory and pids limits (a rootless service on a cgroup v1 host): `bottle up` refuses bundles there"),
                        hint: "use the rootful service, or a host with cgroup v2".into(),
                    });
                }
                if reach.locality == "remote" {
                    report.problems.push(Problem {
                        problem: format!("the {name} engine at {} runs on another host: bottle refuses it (a bottle's loopback ports would be on that host)", reach.endpoint),
                        hint: "run bottle on the engine's host, or choose an engine on this host (`--context default`, or unset DOCKER_HOST and DOCKER_CONTEXT)".into(),
                    });
                }
            }
            report.version = Some(c.info.version.clone());
            report.api_version = Some(c.info.api_version.clone());
            report.endpoint = Some(c.info.endpoint.clone());
            match c.runtime.image(DEFAULT_IMAGE).await {
                Ok(found) => {
                    report.image_present = Some(found.is_some());
                    if found.is_none() {
                        report.problems.push(Problem {
                            problem: format!("image {DEFAULT_IMAGE} is not present"),
                            hint: format!("run `bottle image load --runtime {name}` (build the archive first with `cargo xtask image`)"),
                        });
                    }
                }
                Err(e) => report.problems.push(Problem {
                    problem: format!("looking up image {DEFAULT_IMAGE} failed: {e}"),
                    hint: "run again with -vv for details".into(),
                }),
            }
        }
        Err(Unusable::NotBuilt(_)) => report.problems.push(Problem {
            problem: format!("this bottle was built without the {name} runtime (feature `{name}`)"),
            hint: format!("rebuild with `cargo build -p bottle-cli --features {name}`"),
        }),
        Err(Unusable::Endpoint {
            source,
            problem,
            hint,
        }) => {
            report.chosen_by = Some(source.clone());
            report.problems.push(Problem {
                problem: format!("{source}: {problem}"),
                hint,
            });
        }
        // Not refused for doctor; listed for completeness of the match.
        Err(Unusable::Remote(reach)) => report.reach(&reach),
        Err(Unusable::Failed(e, reach)) => {
            if let Some(reach) = &reach {
                report.reach(reach);
            }
            if let bottle_core::Error::Runtime(bottle_core::RuntimeError::EngineUnavailable {
                tried,
                hint,
                ..
            }) = &e
            {
                report.endpoint = Some(tried.clone());
                report.problems.push(Problem {
                    problem: format!("the {name} engine does not answer at {tried}"),
                    hint: hint.clone(),
                });
            } else {
                report.problems.push(Problem {
                    problem: format!("the {name} engine failed: {e}"),
                    hint: "run again with -vv for details".into(),
                });
            }
        }
    }
    report
}

#[derive(Debug, Serialize)]
struct Doctor<'a> {
    /// The engine commands would use (with `--runtime`, that one), if it answers.
    selected: Option<&'static str>,
    engines: &'a [Report],
}

pub async fn run(ctx: &Context) -> Result<(), Failure> {
    output::refuse_env(ctx.global.output, "doctor")?;
    let context = ctx.global.context.as_deref();
    let (docker, podman) = tokio::join!(
        check(Engine::Docker, context),
        check(Engine::Podman, context)
    );
    let reports = [docker, podman];
    // As `select` chooses: --context means Docker, and an engine on another host is refused.
    let asked = ctx.global.runtime.or(context.map(|_| Engine::Docker));
    let selected = reports
        .iter()
        .filter(|r| asked.is_none_or(|e| e.name() == r.engine))
        .find(|r| r.answers && r.remote != Some(true))
        .map(|r| r.engine);
    if ctx.global.output == Output::Json {
        output::emit_json(&Doctor {
            selected,
            engines: &reports,
        });
    } else {
        let mut s = String::new();
        for r in &reports {
            let status = match (&r.version, &r.endpoint) {
                (Some(v), Some(at)) => format!(
                    "answers: version {v} (API {}) at {at}",
                    r.api_version.as_deref().unwrap_or("?")
                ),
                (_, Some(at)) => format!("does not answer at {at}"),
                _ => "not usable".to_string(),
            };
            s.push_str(&format!("{}: {status}\n", r.engine));
            if let Some(how) = &r.chosen_by {
                let host = match r.locality {
                    Some("remote") => ", on another host",
                    Some("this-host") => ", on this host over the network",
                    _ => "",
                };
                s.push_str(&format!("  endpoint chosen by {how}{host}\n"));
            }
            if let (Some(mode), Some(why)) = (r.loopback_mode, &r.loopback_reason) {
                s.push_str(&format!("  loopback: {mode} ({why})\n"));
            }
            if let Some(rootless) = r.rootless {
                s.push_str(&format!(
                    "  {}\n",
                    if rootless { "rootless" } else { "rootful" }
                ));
            }
            if r.image_present == Some(true) {
                s.push_str(&format!("  image {DEFAULT_IMAGE}: present\n"));
            }
            for p in &r.problems {
                s.push_str(&format!("  problem: {}\n  hint: {}\n", p.problem, p.hint));
            }
        }
        match selected {
            Some(engine) => s.push_str(&format!("\nbottle will use {engine}\n")),
            None => s.push_str("\nno usable engine\n"),
        }
        output::emit(&s);
    }
    if selected.is_some() {
        Ok(())
    } else {
        Err(Failure::unavailable(
            match ctx.global.runtime {
                Some(e) => format!("the {} engine does not answer", e.name()),
                None => "no container engine answers".into(),
            },
            "start Docker or Podman (`cargo xtask engines` does both), then run `bottle doctor` again",
        ))
    }
}
