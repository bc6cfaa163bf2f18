//! What to do about a failure, worded in one place from data: `bottle_core`'s [`Advice`] and
//! the CLI's own situations. A hint is prose and `bottle` commands; each command is rendered
//! with this run's `--runtime` and `--prefix`, so it can be pasted as is.

use bottle_core::Advice;

/// The prefix `--prefix` defaults to.
pub const DEFAULT_PREFIX: &str = "bottle";

/// The global flags of the run a hint's commands carry.
#[derive(Debug, Clone, Copy)]
pub struct Globals<'a> {
    /// `--runtime`, when given.
    pub runtime: Option<&'a str>,
    /// `--prefix` (shown only when not [`DEFAULT_PREFIX`]).
    pub prefix: &'a str,
    /// `--context`, when given: a Docker context, so shown in commands for Docker.
    pub context: Option<&'a str>,
}

impl Default for Globals<'_> {
    fn default() -> Self {
        Globals {
            runtime: None,
            prefix: DEFAULT_PREFIX,
            context: None,
        }
    }
}

/// A hint: prose and `bottle` commands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hint(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `bottle <globals> <args>`; `runtime` names the engine when the command is about a given
    /// one (whatever `--runtime` says).
    Bottle {
        args: String,
        runtime: Option<String>,
    },
}

impl Hint {
    /// Prose.
    pub fn text(text: impl Into<String>) -> Self {
        Hint(vec![Piece::Text(text.into())])
    }

    /// Then more prose.
    pub fn then(mut self, text: impl Into<String>) -> Self {
        self.0.push(Piece::Text(text.into()));
        self
    }

    /// Then the command `bottle <args>`.
    pub fn bottle(mut self, args: impl Into<String>) -> Self {
        self.0.push(Piece::Bottle {
            args: args.into(),
            runtime: None,
        });
        self
    }

    /// Then the command `bottle --runtime <engine> <args>`.
    pub fn bottle_on(mut self, engine: &str, args: impl Into<String>) -> Self {
        self.0.push(Piece::Bottle {
            args: args.into(),
            runtime: Some(engine.into()),
        });
        self
    }

    /// The hint as one line, commands in backquotes with this run's flags.
    pub fn render(&self, globals: Globals<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Bottle { args, runtime } => {
                    out.push_str("`bottle ");
                    let engine = runtime.as_deref().or(globals.runtime);
                    if let Some(engine) = engine {
                        out.push_str(&format!("--runtime {engine} "));
                    }
                    // A context names a Docker engine: the command must reach the same one.
                    if let Some(context) = globals.context.filter(|_| engine != Some("podman")) {
                        out.push_str(&format!("--context {context} "));
                    }
                    if globals.prefix != DEFAULT_PREFIX {
                        out.push_str(&format!("--prefix {} ", globals.prefix));
                    }
                    out.push_str(args);
                    out.push('`');
                }
            }
        }
        out
    }

    /// The hint for `advice`; `None` when there is nothing to add to the message.
    pub fn of(advice: &Advice) -> Option<Hint> {
        Some(match advice {
            Advice::None => return None,
            Advice::FixInput { field } => Hint::text(format!(
                "fix `{field}` on the command line or in the bottle file (see "
            ))
            .bottle("up --help")
            .then(")"),
            Advice::StartEngine { hint, .. } => Hint::text(format!("{hint}; "))
                .bottle("doctor")
                .then(" shows which engines answer, `--runtime` picks one"),
            Advice::LoadImage { engine, .. } => Hint::text("load it with ")
                .bottle_on(engine, "image load")
                .then(" (build the archive with `cargo xtask image`)"),
            Advice::FreePool { .. } => Hint::text("tear down unused bottles (")
                .bottle("down")
                .then(", ")
                .bottle("gc")
                .then(") or configure a larger pool"),
            Advice::UseOrRemoveBottle { slug } => Hint::text("use it (")
                .bottle(format!("env {slug}"))
                .then("), or remove it with ")
                .bottle(format!("down {slug}"))
                .then("; ")
                .bottle("gc")
                .then(" removes what crashed launches left"),
            Advice::StartBottle { slug } => {
                Hint::text("start it with ").bottle(format!("up {slug}"))
            }
            Advice::RecreateBottle { slug } => Hint::text("bring it back with ")
                .bottle(format!("down {slug}"))
                .then(" then ")
                .bottle(format!("up {slug}")),
            Advice::ReadLogs { slug } => {
                Hint::text("read the bundle's output with ").bottle(format!("logs {slug}"))
            }
            Advice::ReadLogsThenRecreate { slug } => Hint::text("read ")
                .bottle(format!("logs {slug}"))
                .then(", then ")
                .bottle(format!("down {slug}"))
                .then(" and ")
                .bottle(format!("up {slug}")),
            Advice::CollectGarbage => Hint::text("remove what was left with ").bottle("gc"),
            // Diagnose, and advice this build does not know yet.
            _ => Hint::text("run again with -vv for the engine's details, and ").bottle("doctor"),
        })
    }
}

impl From<&str> for Hint {
    fn from(text: &str) -> Self {
        Hint::text(text)
    }
}

impl From<String> for Hint {
    fn from(text: String) -> Self {
        Hint::text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_the_runs_engine_and_prefix() {
        let hint = Hint::of(&Advice::UseOrRemoveBottle { slug: "x".into() }).unwrap();
        assert_eq!(
            hint.render(Globals::default()),
            "use it (`bottle env x`), or remove it with `bottle down x`; `bottle gc` removes what crashed launches left"
        );
        assert_eq!(
            hint.render(Globals {
                runtime: Some("podman"),
                prefix: "bt-a",
                context: None,
            }),
            "use it (`bottle --runtime podman --prefix bt-a env x`), or remove it with `bottle --runtime podman --prefix bt-a down x`; `bottle --runtime podman --prefix bt-a gc` removes what crashed launches left"
        );
    }

    #[test]
    fn a_command_about_one_engine_names_it() {
        let hint = Hint::of(&Advice::LoadImage {
            image: "i".into(),
            engine: "docker".into(),
        })
        .unwrap();
        assert_eq!(
            hint.render(Globals::default()),
            "load it with `bottle --runtime docker image load` (build the archive with `cargo xtask image`)"
        );
        assert_eq!(
            hint.render(Globals {
                runtime: Some("podman"),
                prefix: "bottle",
                context: None,
            }),
            "load it with `bottle --runtime docker image load` (build the archive with `cargo xtask image`)"
        );
    }

    #[test]
    fn prose_stays_as_written() {
        let text = "use `bottle up` to start";
        assert_eq!(
            Hint::from(text).render(Globals {
                runtime: Some("docker"),
                prefix: "p",
                context: None,
            }),
            text
        );
        assert!(Hint::of(&Advice::None).is_none());
    }

    #[test]
    fn a_context_is_repeated_in_commands_for_docker_only() {
        let hint = Hint::of(&Advice::UseOrRemoveBottle { slug: "x".into() }).expect("a hint");
        let globals = Globals {
            runtime: None,
            prefix: DEFAULT_PREFIX,
            context: Some("ci"),
        };
        let text = hint.render(globals);
        assert!(text.contains("`bottle --context ci down x`"), "{text}");
        let podman = Hint::of(&Advice::LoadImage {
            image: "i".into(),
            engine: "podman".into(),
        })
        .expect("a hint")
        .render(globals);
        assert!(!podman.contains("--context"), "{podman}");
    }
}
