//! `bottle doctor`: which engines answer, their versions and sockets, how each endpoint was
//! chosen and whose host it is on, whether the engine is rootless, whether the reference image
//! is present, and what to do about each problem.

use bottle_core::lifecycle::DEFAULT_IMAGE;
use bottle_core::Advice;

use crate::cli::{Engine, Output};
use crate::commands::Context;
use crate::exit::Failure;
use crate::hint::{Globals, Hint};
use crate::json::{Doctor, EngineReport as Report, Problem};
use crate::runtime::{self, Purpose, Reach, Unusable};

/// What the adapter said of where it reached the engine.
fn record_reach(report: &mut Report, reach: &Reach) {
    report.endpoint = Some(reach.endpoint.clone());
    report.chosen_by = Some(reach.chosen_by.clone());
    report.locality = Some(reach.locality.into());
    report.remote = Some(reach.locality == "remote");
    report.rootless = reach.rootless;
    report.applies_limits = reach.applies_limits;
}

async fn check(engine: Engine, globals: Globals<'_>, context: Option<&str>) -> Report {
    let name = engine.name();
    let mut report = Report {
        engine: name.into(),
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
            report.loopback_mode = Some(detected.mode.as_str().into());
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
                record_reach(&mut report, reach);
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
                        let load = Advice::LoadImage {
                            image: DEFAULT_IMAGE.into(),
                            engine: name.into(),
                        };
                        report.problems.push(Problem {
                            problem: format!("image {DEFAULT_IMAGE} is not present"),
                            hint: Hint::of(&load)
                                .map(|h| h.render(globals))
                                .unwrap_or_default(),
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
        Err(Unusable::Remote(reach)) => record_reach(&mut report, &reach),
        Err(Unusable::Failed(e, reach)) => {
            if let Some(reach) = &reach {
                record_reach(&mut report, reach);
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

pub async fn run(ctx: &Context) -> Result<(), Failure> {
    let globals = Globals {
        runtime: ctx.global.runtime.map(Engine::name),
        prefix: &ctx.global.prefix,
        context: ctx.global.context.as_deref(),
    };
    let context = ctx.global.context.as_deref();
    let (docker, podman) = tokio::join!(
        check(Engine::Docker, globals, context),
        check(Engine::Podman, globals, context)
    );
    let reports = [docker, podman];
    // As `select` chooses: --context means Docker, and an engine on another host is refused.
    let asked = ctx.global.runtime.or(context.map(|_| Engine::Docker));
    let selected = reports
        .iter()
        .filter(|r| asked.is_none_or(|e| e.name() == r.engine))
        .find(|r| r.answers && r.remote != Some(true))
        .map(|r| r.engine.clone());
    if ctx.global.output == Output::Json {
        ctx.emit_json(&Doctor {
            selected: selected.clone(),
            engines: reports.to_vec(),
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
                let host = match r.locality.as_deref() {
                    Some("remote") => ", on another host",
                    Some("this-host") => ", on this host over the network",
                    _ => "",
                };
                s.push_str(&format!("  endpoint chosen by {how}{host}\n"));
            }
            if let (Some(mode), Some(why)) = (&r.loopback_mode, &r.loopback_reason) {
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
        match &selected {
            Some(engine) => s.push_str(&format!("\nbottle will use {engine}\n")),
            None => s.push_str("\nno usable engine\n"),
        }
        ctx.emit(&s);
    }
    if selected.is_some() {
        Ok(())
    } else {
        Err(Failure::unavailable(
            match ctx.global.runtime {
                Some(e) => format!("the {} engine does not answer", e.name()),
                None => "no container engine answers".into(),
            },
            Hint::text("start Docker or Podman (`cargo xtask engines` does both), then run ")
                .bottle("doctor")
                .then(" again"),
        ))
    }
}
