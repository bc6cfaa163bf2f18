//! The pre-receive hook: the `bottle-sidecars` binary itself, run by `git receive-pack` on the
//! mirror through a `pre-receive` link (the binary dispatches on its name), with the pushed
//! objects still in quarantine.
//!
//! It refuses the whole push, with the rule, ref, commit and file on stderr (the agent sees
//! them as `remote:` lines) and nothing sent upstream, when any update:
//! - deletes a ref, or moves one that is not where the upstream has it;
//! - names a ref the upstream's `push` list (or the default rule) does not allow;
//! - is not a fast-forward;
//! - brings a blob over the size cap, or any object (blob, commit or tag message, tree entry
//!   names) holding a secret of the bundle (raw or encoded) or a well-known credential format.
//!
//! Then it pushes the updates to the upstream (`git push --porcelain`, `--atomic` for more
//! than one ref) with the credential in the environment, relays the upstream's answer, and
//! fails when the upstream refused, so the agent's push succeeds only if the upstream's did.
//! Its decision goes to a file the gate reads for the audit log.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use bottle_core::git::PlannedGitUpstream;
use serde::{Deserialize, Serialize};

use super::rules::{is_zero_id, ref_allowed};
use super::upstream::{Git, RefChange, Upstream};
use crate::leak::{Finding, Scanner};

/// The name the binary answers to as the hook.
pub const HOOK_NAME: &str = "pre-receive";
/// The environment variable carrying the hook's [`Job`] (JSON) from the gate.
pub const JOB_ENV: &str = "BOTTLE_GIT_GATE_HOOK";
/// The most ref updates one push may carry.
const MAX_UPDATES: usize = 1000;
/// The variables receive-pack sets for the quarantined objects, passed on to git.
const QUARANTINE: [&str; 4] = [
    "GIT_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
];

/// What the gate tells the hook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub upstream: PlannedGitUpstream,
    pub git: Git,
    /// The upstream's default branch, as its `HEAD` said at the refresh.
    pub default_branch: Option<String>,
    pub max_blob_bytes: u64,
    /// Where the decision goes.
    pub decision: PathBuf,
}

/// The hook's decision, for the gate's audit line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// `allowed` (the upstream took it), `denied` (a rule), `failed` (the upstream did not).
    pub decision: String,
    pub reason: Option<String>,
    pub refs: Vec<RefChange>,
}

/// A refusal: the rule, and where.
#[derive(Debug, Clone)]
struct Refusal {
    rule: &'static str,
    refname: String,
    commit: Option<String>,
    path: Option<String>,
    detail: String,
}

impl Refusal {
    fn new(rule: &'static str, refname: &str, detail: String) -> Refusal {
        Refusal {
            rule,
            refname: refname.to_string(),
            commit: None,
            path: None,
            detail,
        }
    }

    /// The lines for the agent.
    fn message(&self) -> String {
        let mut m = format!(
            "bottle git gate: push refused, nothing was sent upstream\nrule: {}\nref: {}\n",
            self.rule, self.refname
        );
        if let Some(c) = &self.commit {
            m.push_str(&format!("commit: {c}\n"));
        }
        if let Some(p) = &self.path {
            m.push_str(&format!("file: {p}\n"));
        }
        m.push_str(&self.detail);
        m.push('\n');
        m
    }

    /// One line for the audit log.
    fn reason(&self) -> String {
        let mut r = format!("{}: {} (ref {}", self.rule, self.detail, self.refname);
        if let Some(c) = &self.commit {
            r.push_str(&format!(", commit {c}"));
        }
        if let Some(p) = &self.path {
            r.push_str(&format!(", file {p}"));
        }
        r.push(')');
        r
    }
}

/// Runs as the hook; the exit code tells receive-pack whether to accept the push.
pub fn main() -> ExitCode {
    let job: Job = match std::env::var(JOB_ENV)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
    {
        Some(job) => job,
        None => {
            say(&format!(
                "bottle-sidecars as {HOOK_NAME}: {JOB_ENV} is missing or invalid; this hook is \
                 run by the git gate only"
            ));
            return ExitCode::FAILURE;
        }
    };
    let mut updates = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut f = line.split(' ');
        if let (Some(old), Some(new), Some(r)) = (f.next(), f.next(), f.next()) {
            updates.push(RefChange {
                refname: r.to_string(),
                old: old.to_string(),
                new: new.to_string(),
            });
        }
    }
    let (decision, code) = decide(&job, &updates);
    let _ = std::fs::write(
        &job.decision,
        serde_json::to_vec(&decision).unwrap_or_default(),
    );
    code
}

fn decide(job: &Job, updates: &[RefChange]) -> (Decision, ExitCode) {
    let done = |decision: &str, reason: Option<String>| Decision {
        decision: decision.into(),
        reason,
        refs: updates.to_vec(),
    };
    let upstream = match Upstream::new(job.upstream.clone(), |k| std::env::var(k).ok()) {
        Ok(u) => u,
        Err(e) => {
            say(&format!("bottle git gate: {e}"));
            return (done("failed", Some(e)), ExitCode::FAILURE);
        }
    };
    let mut secrets = crate::leak::secrets_from_env();
    if let (Some(key), Some(token)) = (&job.upstream.token_key, upstream.token()) {
        secrets.push((key.clone(), token.to_string()));
    }
    let scanner = Scanner::new(secrets);
    let local = Local { job };
    match check(&local, job, updates, &scanner) {
        Ok(()) => {}
        Err(Refusal {
            rule: "error",
            detail,
            ..
        }) => {
            say(&format!("bottle git gate: push refused: {detail}"));
            return (done("failed", Some(detail)), ExitCode::FAILURE);
        }
        Err(refusal) => {
            say(&refusal.message());
            return (done("denied", Some(refusal.reason())), ExitCode::FAILURE);
        }
    }
    match forward(&local, &upstream, updates, &scanner) {
        Ok(summary) => (done("allowed", Some(summary)), ExitCode::SUCCESS),
        Err(reason) => (done("failed", Some(reason)), ExitCode::FAILURE),
    }
}

/// Git on the mirror, seeing the quarantined objects.
struct Local<'a> {
    job: &'a Job,
}

impl Local<'_> {
    fn command(&self) -> Command {
        let mut cmd = self.job.git.command();
        for var in QUARANTINE {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd
    }

    /// Runs `git args`; stdout on success, an error naming the command otherwise.
    fn run(&self, args: &[&str]) -> Result<String, Refusal> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| error(format!("cannot run git {}: {e}", args[0])))?;
        if !out.status.success() {
            return Err(error(format!(
                "git {} failed: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn error(detail: String) -> Refusal {
    Refusal::new("error", "", detail)
}

/// Every rule, in order: refs, then objects.
fn check(
    local: &Local<'_>,
    job: &Job,
    updates: &[RefChange],
    scanner: &Scanner,
) -> Result<(), Refusal> {
    if updates.len() > MAX_UPDATES {
        return Err(Refusal::new(
            "too many refs",
            "",
            format!("a push may update at most {MAX_UPDATES} refs; push in parts"),
        ));
    }
    let current = local.run(&["for-each-ref", "--format=%(objectname) %(refname)"])?;
    let current: Vec<(&str, &str)> = current.lines().filter_map(|l| l.split_once(' ')).collect();
    for u in updates {
        let r = u.refname.as_str();
        if is_zero_id(&u.new) {
            return Err(Refusal::new(
                "deletion",
                r,
                "the gate never deletes a ref upstream; delete it on the upstream's side if it \
                 must go"
                    .into(),
            ));
        }
        ref_allowed(
            job.upstream.push.as_deref(),
            job.default_branch.as_deref(),
            r,
        )
        .map_err(|detail| Refusal::new("ref not allowed", r, detail))?;
        let at = current
            .iter()
            .find(|(_, name)| *name == r)
            .map(|(id, _)| *id);
        let claimed = (!is_zero_id(&u.old)).then_some(u.old.as_str());
        if at != claimed {
            return Err(Refusal::new(
                "stale",
                r,
                "the upstream's ref moved since this push was prepared; fetch, rebase and push \
                 again"
                    .into(),
            ));
        }
        if let Some(old) = claimed {
            let ff = local
                .command()
                .args(["merge-base", "--is-ancestor", old, &u.new])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| error(format!("cannot run git merge-base: {e}")))?;
            if !ff.success() {
                let mut refusal = Refusal::new(
                    "non-fast-forward",
                    r,
                    "the update does not contain the upstream's commit; the gate only \
                     fast-forwards (fetch, rebase or merge, and push again)"
                        .into(),
                );
                refusal.commit = Some(u.new.clone());
                return Err(refusal);
            }
        }
    }
    check_objects(local, job, updates, scanner)
}

/// Scans every object the push brings that the upstream does not have yet.
fn check_objects(
    local: &Local<'_>,
    job: &Job,
    updates: &[RefChange],
    scanner: &Scanner,
) -> Result<(), Refusal> {
    // (id, path, ref) of each new object, each once.
    let mut objects: Vec<(String, String, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, u) in updates.iter().enumerate() {
        let listed = local.run(&["rev-list", "--objects", &u.new, "--not", "--all"])?;
        for line in listed.lines() {
            let (id, path) = line.split_once(' ').unwrap_or((line, ""));
            if seen.insert(id.to_string()) {
                objects.push((id.to_string(), path.to_string(), i));
            }
        }
    }
    if objects.is_empty() {
        return Ok(());
    }
    let mut child = local
        .command()
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| error(format!("cannot run git cat-file: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let ids: Vec<String> = objects.iter().map(|(id, _, _)| id.clone()).collect();
    // Written from another thread: cat-file answers while it reads, and both pipes are finite.
    let writer = std::thread::spawn(move || {
        for id in ids {
            if writeln!(stdin, "{id}").is_err() {
                break;
            }
        }
    });
    let mut out = BufReader::with_capacity(256 * 1024, child.stdout.take().expect("piped"));
    let mut found: Option<Refusal> = None;
    let mut content = Vec::new();
    for (id, path, ref_index) in &objects {
        let mut header = String::new();
        if out.read_line(&mut header).unwrap_or(0) == 0 {
            break;
        }
        let mut h = header.split_whitespace();
        let (kind, size) = match (h.next(), h.next(), h.next()) {
            (Some(_), Some(kind), Some(size)) => {
                (kind.to_string(), size.parse::<u64>().unwrap_or(0))
            }
            _ => {
                found = Some(error(format!("git cat-file cannot read object {id}")));
                break;
            }
        };
        let refname = &updates[*ref_index].refname;
        if kind == "blob" && size > job.max_blob_bytes {
            let mut r = Refusal::new(
                "blob too large",
                refname,
                format!(
                    "the file is {size} bytes, over the gate's cap of {} bytes; keep large \
                     files out of the repository",
                    job.max_blob_bytes
                ),
            );
            r.path = Some(path.clone());
            r.commit = Some(id.clone());
            found = Some(r);
            break;
        }
        content.clear();
        if (&mut out).take(size + 1).read_to_end(&mut content).is_err() {
            found = Some(error(format!("git cat-file cut object {id} short")));
            break;
        }
        content.truncate(size as usize);
        if let Some(finding) = scanner.scan(&content) {
            let (rule, what) = match &finding {
                Finding::Secret { .. } => ("secret", "holds"),
                Finding::Pattern { .. } => ("credential pattern", "holds"),
            };
            let place = match kind.as_str() {
                "commit" => "the commit message or header",
                "tag" => "the tag's message",
                "tree" => "a file name",
                _ => "the file",
            };
            let mut r = Refusal::new(
                rule,
                refname,
                format!(
                    "{place} {what} {finding}; remove it from every commit of the push (amend or \
                     rebase) and push again"
                ),
            );
            r.path = if path.is_empty() {
                (kind == "tree").then(|| "(top level)".to_string())
            } else {
                Some(path.clone())
            };
            r.commit = Some(id.clone());
            found = Some(r);
            break;
        }
    }
    drop(out);
    let _ = child.kill();
    let _ = child.wait();
    let _ = writer.join();
    let Some(mut refusal) = found else {
        return Ok(());
    };
    // Name the commit that brought a file or tree, rather than the object's own id.
    if refusal.rule != "error" && refusal.path.is_some() {
        let object = refusal.commit.clone().unwrap_or_default();
        let news: Vec<&str> = updates.iter().map(|u| u.new.as_str()).collect();
        let mut args = vec!["log", "--format=%H", "--reverse"];
        let find = format!("--find-object={object}");
        args.push(&find);
        args.extend(news.iter().copied());
        args.extend(["--not", "--all"]);
        let first = local
            .run(&args)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string));
        refusal.commit = first.or_else(|| {
            updates
                .iter()
                .find(|u| u.refname == refusal.refname)
                .map(|u| u.new.clone())
        });
    }
    Err(refusal)
}

/// Pushes the checked updates upstream; the summary for the audit, or why it failed.
fn forward(
    local: &Local<'_>,
    upstream: &Upstream,
    updates: &[RefChange],
    scanner: &Scanner,
) -> Result<String, String> {
    if updates.is_empty() {
        return Ok("nothing to update".into());
    }
    let mut cmd = local.command();
    cmd.args(["push", "--porcelain", "--no-verify"]);
    if updates.len() > 1 {
        cmd.arg("--atomic");
    }
    cmd.arg(upstream.url());
    for u in updates {
        cmd.arg(format!("{}:{}", u.new, u.refname));
    }
    upstream.configure(&mut cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git push: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The upstream's words, each line checked: a hook upstream could echo anything.
    let relay = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.trim().is_empty() && *l != "Done")
            .map(|l| match scanner.scan(l.as_bytes()) {
                Some(f) => format!("upstream: <line withheld: it carries {f}>"),
                None => format!("upstream: {l}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let rejected = stdout.lines().any(|l| l.starts_with('!'));
    if out.status.success() && !rejected {
        say(&format!(
            "bottle git gate: checked and pushed to {}\n{}",
            upstream.url(),
            relay(&stdout)
        ));
        return Ok(format!("pushed to {}", upstream.url()));
    }
    let why = if stdout.contains("\t") {
        format!(
            "upstream {} refused the push; nothing changed upstream",
            upstream.url()
        )
    } else {
        upstream.explain_failure(false, &stderr)
    };
    say(&format!(
        "bottle git gate: {why}\n{}\n{}",
        relay(&stdout),
        relay(&stderr)
    ));
    Err(why)
}

/// A line for the agent (stderr reaches it as `remote:` lines).
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", msg.trim_end());
}
