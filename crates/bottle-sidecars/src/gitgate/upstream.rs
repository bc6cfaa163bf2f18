//! An upstream as the gate runs it: its credential, the git commands that talk to it, and the
//! bare mirror the agent's fetches are served from and its pushes are received into.
//!
//! The credential travels only in the environment of the git process that talks to the
//! upstream, as `http.<url>.extraHeader` set through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/
//! `GIT_CONFIG_VALUE_n`: `Authorization: Basic base64(x-access-token:<token>)`, the form
//! GitHub, GitLab and Gitea all take for a token. It is never on a command line, in a URL, in
//! the mirror's config or in a message. Every git process starts from an empty environment
//! (no system or global config, no prompts, no askpass, the C locale so errors can be read).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use bottle_core::git::PlannedGitUpstream;
use serde::{Deserialize, Serialize};

/// The user name sent with the token (any name works for token auth on the common hosts).
pub const TOKEN_USER: &str = "x-access-token";

/// How the gate runs git: which binary, with which (empty) home.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Git {
    pub bin: PathBuf,
    pub home: PathBuf,
}

impl Git {
    /// `git` with a clean environment: no inherited variable reaches it.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        cmd
    }
}

/// An upstream with its token's value (read from the bundle's environment).
#[derive(Clone)]
pub struct Upstream {
    pub planned: PlannedGitUpstream,
    token: Option<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Upstream")
            .field("name", &self.planned.name)
            .field("url", &self.planned.url)
            .field("token_key", &self.planned.token_key)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// `planned` with its token read by `lookup`. A named token that is not set is an error
    /// naming the key (the planner checks it too; a bundle started by hand may not have it).
    pub fn new(
        planned: PlannedGitUpstream,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Upstream, String> {
        if !bottle_core::git::is_valid_name(&planned.name) {
            return Err(format!(
                "git upstream name {:?} is not a repository name (letters, digits, -, _, .)",
                planned.name
            ));
        }
        let scheme_ok = planned.url.starts_with("https://")
            || (planned.insecure_http && planned.url.starts_with("http://"));
        if !scheme_ok {
            return Err(format!(
                "git upstream {}: url must be https:// (http:// only with insecure_http)",
                planned.name
            ));
        }
        // The URL is printed and logged: it must not carry a credential of its own.
        let authority = planned
            .url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .unwrap_or("");
        if authority.contains('@') {
            return Err(format!(
                "git upstream {}: url carries credentials; put the token in an env entry and \
                 name it with token",
                planned.name
            ));
        }
        let token = match &planned.token_key {
            Some(key) => Some(lookup(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                format!(
                    "git upstream {}: its token variable {key} is not set in the bundle's \
                     environment; pass it (a bare env entry) or remove token",
                    planned.name
                )
            })?),
            None => None,
        };
        Ok(Upstream { planned, token })
    }

    pub fn name(&self) -> &str {
        &self.planned.name
    }

    pub fn url(&self) -> &str {
        &self.planned.url
    }

    /// The token's value, for the scanner (never for a message).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sets the configuration for talking to the upstream in `cmd`'s environment: only the
    /// upstream's scheme, no redirects (a redirect could carry the credential elsewhere), a
    /// stalled transfer abandoned (under 1 KiB/s for a minute), its CA file, and the credential.
    pub fn configure(&self, cmd: &mut Command) {
        let mut config: Vec<(String, String)> = vec![
            ("protocol.allow".into(), "never".into()),
            ("protocol.https.allow".into(), "always".into()),
            ("http.followRedirects".into(), "false".into()),
            ("http.lowSpeedLimit".into(), "1024".into()),
            ("http.lowSpeedTime".into(), "60".into()),
            ("credential.helper".into(), String::new()),
            ("core.askPass".into(), String::new()),
        ];
        if self.planned.insecure_http {
            config.push(("protocol.http.allow".into(), "always".into()));
        }
        if let Some(ca) = &self.planned.ca_file {
            config.push(("http.sslCAInfo".into(), ca.clone()));
        }
        if let Some(token) = &self.token {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN_USER}:{token}"));
            config.push((
                format!("http.{}.extraHeader", self.planned.url),
                format!("Authorization: Basic {basic}"),
            ));
        }
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (k, v)) in config.into_iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
    }

    /// What to tell the agent when a git command talking to the upstream failed with
    /// `stderr` while the gate tried to `fetch` (or push): the cause in words and what to
    /// change, never the credential.
    pub fn explain_failure(&self, fetch: bool, stderr: &str) -> String {
        let (url, name) = (self.url(), self.name());
        let (to, from) = if fetch {
            ("to fetch", "fetch from")
        } else {
            ("to push", "push to")
        };
        let key = self.planned.token_key.as_deref();
        let has = |s: &str| stderr.contains(s);
        if has("could not read Username") || has("Authentication failed") || has("error: 401") {
            return match key {
                Some(key) => format!(
                    "upstream {url} refused the gate's credential (401) {to}: check the token \
                     in {key} for upstream {name}"
                ),
                None => format!(
                    "upstream {url} asks for a credential (401) {to}, and upstream {name} has \
                     none: set token = \"KEY\" for upstream {name} (KEY: a bare env entry \
                     holding the token)"
                ),
            };
        }
        if has("error: 403") {
            return format!(
                "upstream {url} refused the gate's credential (403) {to}: the token{} lacks \
                 access to upstream {name}",
                key.map(|k| format!(" in {k}")).unwrap_or_default()
            );
        }
        if has("error: 404") || has("not found") {
            return format!(
                "upstream {url} has no repository there (404), or hides it from the gate's \
                 credential: check url{} for upstream {name}",
                key.map(|_| " and token").unwrap_or_default()
            );
        }
        if has("SSL certificate") || has("certificate verify") || has("server certificate") {
            return format!(
                "upstream {url}: its TLS certificate is not trusted, so the gate cannot \
                 {from} it; set ca_file for upstream {name} if it uses a private CA"
            );
        }
        let detail = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| l.starts_with("fatal:") || l.starts_with("error:"))
            .or_else(|| stderr.lines().map(str::trim).rfind(|l| !l.is_empty()))
            .unwrap_or("no message");
        format!("cannot {from} upstream {url} for {name}: {detail}")
    }
}

/// A ref update: a ref and its object ids before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefChange {
    #[serde(rename = "ref")]
    pub refname: String,
    pub old: String,
    pub new: String,
}

/// What a refresh found.
#[derive(Debug, Clone, Default)]
pub struct Refreshed {
    /// The upstream's default branch (`refs/heads/main`), when it said.
    pub default_branch: Option<String>,
    /// Refs of the mirror the refresh moved, created or removed.
    pub changes: Vec<RefChange>,
}

/// The mirror's settings, written once when it is made: nothing runs on its own (no gc, no
/// maintenance), the agent's push is received with the pre-receive hook at `hooks` and
/// without deletions or rewinds even if the hook were bypassed, and fetches may filter.
fn mirror_config(hooks: &Path, max_input: u64) -> String {
    let quoted = hooks
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "[core]\n\thooksPath = \"{quoted}\"\n\tlogAllRefUpdates = false\n\
         [gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n\
         [receive]\n\tdenyDeletes = true\n\tdenyNonFastForwards = true\n\tautogc = false\n\
         \tadvertisePushOptions = false\n\tmaxInputSize = {max_input}\n\
         [uploadpack]\n\tallowFilter = true\n"
    )
}

/// Runs `cmd` (bounded by `limit`), returning its stdout, or its stderr on failure.
async fn output(cmd: Command, limit: Duration) -> Result<String, String> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let run = cmd.output();
    match tokio::time::timeout(limit, run).await {
        Err(_) => Err(format!("timed out after {} s", limit.as_secs())),
        Ok(Err(e)) => Err(format!("cannot run git: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(String::from_utf8_lossy(&out.stderr).into()),
    }
}

/// The mirror of an upstream: a bare repository holding the upstream's branches and tags.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub path: PathBuf,
}

impl Mirror {
    /// Makes the mirror if it does not exist yet (in a side directory renamed into place, so a
    /// half-made one is never used).
    pub async fn ensure(
        &self,
        git: &Git,
        hooks: &Path,
        max_input: u64,
        limit: Duration,
    ) -> Result<(), String> {
        if self.path.join("config").is_file() {
            return Ok(());
        }
        let side = self.path.with_extension("new");
        let _ = std::fs::remove_dir_all(&side);
        let mut init = git.command();
        init.args(["init", "--bare", "--quiet", "--template="])
            .arg(&side);
        output(init, limit)
            .await
            .map_err(|e| format!("cannot make the mirror {}: {e}", self.path.display()))?;
        let config = side.join("config");
        let mut text = std::fs::read_to_string(&config)
            .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
        text.push_str(&mirror_config(hooks, max_input));
        std::fs::write(&config, text)
            .and_then(|()| std::fs::rename(&side, &self.path))
            .map_err(|e| format!("cannot set up the mirror {}: {e}", self.path.display()))
    }

    /// Brings the mirror's branches, tags and `HEAD` to the upstream's: asks the upstream for
    /// its refs, and fetches only when they differ from the mirror's.
    /// The error is the message for the agent.
    pub async fn refresh(
        &self,
        git: &Git,
        upstream: &Upstream,
        limit: Duration,
    ) -> Result<Refreshed, String> {
        let mut ls = git.command();
        ls.args(["ls-remote", "--symref", upstream.url()]);
        upstream.configure(&mut ls);
        let listed = output(ls, limit)
            .await
            .map_err(|e| upstream.explain_failure(true, &e))?;
        let (head, theirs) = parse_ls_remote(&listed);
        let ours = self.refs(git, limit).await?;
        let mut changes = Vec::new();
        for (r, id) in &theirs {
            let old = ours.iter().find(|(o, _)| o == r).map(|(_, i)| i.clone());
            if old.as_deref() != Some(id.as_str()) {
                changes.push(RefChange {
                    refname: r.clone(),
                    old: old.unwrap_or_else(|| ZERO.into()),
                    new: id.clone(),
                });
            }
        }
        for (r, id) in &ours {
            if !theirs.iter().any(|(t, _)| t == r) {
                changes.push(RefChange {
                    refname: r.clone(),
                    old: id.clone(),
                    new: ZERO.into(),
                });
            }
        }
        if !changes.is_empty() {
            let mut fetch = git.command();
            fetch.arg("--git-dir").arg(&self.path).args([
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
                "--update-head-ok",
                "--no-auto-gc",
                upstream.url(),
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ]);
            upstream.configure(&mut fetch);
            output(fetch, limit)
                .await
                .map_err(|e| upstream.explain_failure(true, &e))?;
        }
        if let Some(head) = &head {
            let file = self.path.join("HEAD");
            let want = format!("ref: {head}\n");
            if std::fs::read_to_string(&file).ok().as_deref() != Some(want.as_str()) {
                let mut set = git.command();
                set.arg("--git-dir")
                    .arg(&self.path)
                    .args(["symbolic-ref", "HEAD", head]);
                output(set, limit)
                    .await
                    .map_err(|e| format!("cannot set the mirror's HEAD to {head}: {e}"))?;
            }
        }
        Ok(Refreshed {
            default_branch: head,
            changes,
        })
    }

    /// Repacks the mirror when git's usual thresholds say so (50 packs, 6700 loose objects):
    /// every push and changed fetch adds a pack, and many packs slow every later fetch. The
    /// mirror's own config turns automatic gc off so that it runs only here, in the foreground,
    /// while the caller holds the mirror.
    pub async fn tidy(&self, git: &Git, limit: Duration) {
        let mut gc = git.command();
        gc.arg("--git-dir").arg(&self.path).args([
            "-c",
            "gc.auto=6700",
            "-c",
            "gc.autoPackLimit=50",
            "-c",
            "gc.autoDetach=false",
            "gc",
            "--auto",
            "--quiet",
        ]);
        if let Err(e) = output(gc, limit).await {
            note(&format!(
                "git gc on the mirror {} failed: {}",
                self.path.display(),
                e.trim()
            ));
        }
    }

    /// The mirror's branches and tags with their ids.
    async fn refs(&self, git: &Git, limit: Duration) -> Result<Vec<(String, String)>, String> {
        let mut cmd = git.command();
        cmd.arg("--git-dir").arg(&self.path).args([
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ]);
        let text = output(cmd, limit)
            .await
            .map_err(|e| format!("cannot read the mirror's refs: {e}"))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, r)| (r.to_string(), id.to_string()))
            .collect())
    }
}

/// A diagnostic line on stderr (the init prefixes it with the daemon's name).
fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// The all-zero object id.
pub const ZERO: &str = "0000000000000000000000000000000000000000";

/// `git ls-remote --symref` output: `HEAD`'s target and the branches and tags (peeled lines
/// and other namespaces, such as a host's pull-request refs, left out).
pub fn parse_ls_remote(text: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut head = None;
    let mut refs = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ref: ") {
            if let Some((target, "HEAD")) = rest.split_once('\t') {
                head = Some(target.to_string());
            }
            continue;
        }
        let Some((id, name)) = line.split_once('\t') else {
            continue;
        };
        if (name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            && !name.ends_with("^{}")
        {
            refs.push((name.to_string(), id.to_string()));
        }
    }
    (head, refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(token_key: Option<&str>) -> PlannedGitUpstream {
        PlannedGitUpstream {
            name: "app".into(),
            url: "https://git.example.com/org/app.git".into(),
            token_key: token_key.map(Into::into),
            push: None,
            ca_file: None,
            insecure_http: false,
        }
    }

    #[test]
    fn ls_remote_output() {
        let text = "ref: refs/heads/main\tHEAD\n\
                    1111111111111111111111111111111111111111\tHEAD\n\
                    1111111111111111111111111111111111111111\trefs/heads/main\n\
                    2222222222222222222222222222222222222222\trefs/tags/v1\n\
                    3333333333333333333333333333333333333333\trefs/tags/v1^{}\n\
                    4444444444444444444444444444444444444444\trefs/pull/1/head\n";
        let (head, refs) = parse_ls_remote(text);
        assert_eq!(head.as_deref(), Some("refs/heads/main"));
        assert_eq!(
            refs.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
            ["refs/heads/main", "refs/tags/v1"]
        );
    }

    #[test]
    fn the_credential_is_in_the_environment_only() {
        let up = Upstream::new(planned(Some("APP_TOKEN")), |_| {
            Some("tok-Zr4mK9qL2xW7".into())
        })
        .unwrap();
        let mut cmd = Command::new("git");
        cmd.arg("fetch").arg(up.url());
        up.configure(&mut cmd);
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into()).collect();
        assert!(!args.iter().any(|a| a.contains("tok-")), "{args:?}");
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:tok-Zr4mK9qL2xW7");
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into(),
                    v.map(|v| v.to_string_lossy().into()).unwrap_or_default(),
                )
            })
            .collect();
        assert!(envs.contains(&(
            "GIT_CONFIG_VALUE_7".into(),
            format!("Authorization: Basic {basic}")
        )));
        assert!(envs.contains(&(
            "GIT_CONFIG_KEY_7".into(),
            "http.https://git.example.com/org/app.git.extraHeader".into()
        )));
        assert!(!format!("{up:?}").contains("tok-"));
    }

    #[test]
    fn setup_errors_name_the_field() {
        let e = Upstream::new(planned(Some("APP_TOKEN")), |_| None).unwrap_err();
        assert!(e.contains("APP_TOKEN is not set"), "{e}");
        let mut p = planned(None);
        p.url = "http://h/x.git".into();
        assert!(Upstream::new(p.clone(), |_| None)
            .unwrap_err()
            .contains("https://"));
        p.insecure_http = true;
        assert!(Upstream::new(p.clone(), |_| None).is_ok());
        p.url = "https://user:s3cr3t-value@h/x.git".into();
        let e = Upstream::new(p, |_| None).unwrap_err();
        assert!(
            e.contains("carries credentials") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn failures_in_words() {
        let up = Upstream::new(planned(None), |_| None).unwrap();
        let e = up.explain_failure(
            true,
            "fatal: could not read Username for 'https://git.example.com': terminal prompts disabled",
        );
        assert!(e.contains("(401)") && e.contains("set token = "), "{e}");
        let up = Upstream::new(planned(Some("K")), |_| Some("v-12345678".into())).unwrap();
        let e = up.explain_failure(false, "fatal: Authentication failed for 'https://x'");
        assert!(
            e.contains("refused the gate's credential (401)") && e.contains(" K "),
            "{e}"
        );
        let e = up.explain_failure(true, "fatal: unable to access 'x': Failed to connect");
        assert!(e.contains("fatal: unable to access"), "{e}");
    }
}
