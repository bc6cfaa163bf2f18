//! `bottle doctor`: which engines answer, their versions and sockets, whether the reference
//! image is present, and what to do about each problem.

use bottle_core::lifecycle::DEFAULT_IMAGE;
use bottle_core::Advice;

use crate::cli::{Engine, Output};
use crate::commands::Context;
use crate::exit::Failure;
use crate::hint::{Globals, Hint};
use crate::json::{Doctor, EngineReport as Report, Problem};
use crate::runtime::{self, Unusable};

async fn check(engine: Engine, globals: Globals<'_>) -> Report {
    let name = engine.name();
    let mut report = Report {
        engine: name.into(),
        answers: false,
        version: None,
        api_version: None,
        endpoint: None,
        image_present: None,
        problems: Vec::new(),
    };
    match runtime::connect(engine).await {
        Ok(c) => {
            report.answers = true;
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
        Err(Unusable::Failed(e)) => {
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
    };
    let (docker, podman) = tokio::join!(
        check(Engine::Docker, globals),
        check(Engine::Podman, globals)
    );
    let reports = [docker, podman];
    let selected = reports
        .iter()
        .filter(|r| ctx.global.runtime.is_none_or(|e| e.name() == r.engine))
        .find(|r| r.answers)
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
