//! A local git upstream: Debian git's smart-HTTP CGI (`git http-backend`) behind a small
//! HTTP/1.1 server, with basic auth that checks a token, as a git host serves a repository.
//!
//! The git part of the benchmark measures the gate and the direct path against it, and the
//! CLI's git gate tests run it on a bottle's gateway address. Threads, not a runtime: one per
//! connection, one `git http-backend` process per request, as a CGI server runs it. Responses
//! are streamed in chunks (so a clone starts receiving while the pack is still being written)
//! and connections are kept alive (as a git host's are).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest request head the server reads.
const MAX_HEAD: usize = 64 * 1024;
/// The largest request body it takes (a push of the benchmark's size fits many times).
const MAX_BODY: usize = 1 << 30;
/// How long a connection may stay silent.
const IDLE: Duration = Duration::from_secs(60);

/// Who may do what.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// The token basic auth must carry as its password (any user name); `None`: no auth at all
    /// (and pushes are allowed to anyone).
    pub token: Option<String>,
    /// Whether reads need the token too (a private repository); otherwise only pushes do (a
    /// public one).
    pub private: bool,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The path and query.
    pub target: String,
    /// The basic auth user, when the token matched.
    pub user: Option<String>,
    pub status: u16,
    /// When the request's head had arrived, and how long until its answer was sent.
    pub started: Instant,
    pub took: Duration,
}

impl Logged {
    /// Whether this request delivered a push (the receive-pack exchange itself).
    pub fn is_push(&self) -> bool {
        self.method == "POST" && self.target.ends_with("/git-receive-pack")
    }
}

/// A running upstream; stops accepting when dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    root: PathBuf,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// Serves the repositories under `root` (`<root>/<name>.git`) on `bind`.
    pub fn start(bind: SocketAddr, root: &Path, auth: Auth) -> io::Result<Upstream> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let log: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (root_t, log_t, stop_t) = (root.to_path_buf(), log.clone(), stop.clone());
        let auth = Arc::new(auth);
        std::thread::Builder::new()
            .name("git-upstream".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop_t.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (root, log, auth) = (root_t.clone(), log_t.clone(), auth.clone());
                    let _ = std::thread::Builder::new()
                        .name("git-upstream-conn".into())
                        .spawn(move || {
                            let _ = serve(stream, &root, &auth, &log);
                        });
                }
            })?;
        Ok(Upstream {
            addr,
            root: root.to_path_buf(),
            log,
            stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    /// The bare repository `name` on disk.
    pub fn repo(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.git"))
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one connection's requests until it closes.
fn serve(stream: TcpStream, root: &Path, auth: &Auth, log: &Mutex<Vec<Logged>>) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut out = stream;
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let started = Instant::now();
        let body = read_body(&mut reader, &head)?;
        let close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let user = authorize(&head, auth);
        let target = if head.query.is_empty() {
            head.path.clone()
        } else {
            format!("{}?{}", head.path, head.query)
        };
        let push =
            head.path.ends_with("/git-receive-pack") || head.query == "service=git-receive-pack";
        let needs_auth = auth.token.is_some() && (auth.private || push);
        let status = match (&user, needs_auth) {
            (None, true) => {
                let text = b"authentication required\n";
                write!(
                    out,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                     Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    text.len()
                )?;
                out.write_all(text)?;
                401
            }
            _ => cgi(&mut out, root, &head, body, user.as_deref(), auth)?,
        };
        log.lock().expect("log lock").push(Logged {
            method: head.method.clone(),
            target,
            user,
            status,
            started,
            took: started.elapsed(),
        });
        out.flush()?;
        if close {
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Reads one request head; `None` at a clean end of the connection.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated head",
                ))
            };
        }
        if raw.ends_with(b"\r\n\r\n") || raw == b"\r\n" {
            break;
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&raw)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Head {
        method: req.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    }))
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Reads the request body: by its length, or chunked (git sends large bodies chunked).
fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> io::Result<Vec<u8>> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if !chunked {
        let len: usize = head
            .header("content-length")
            .map(|v| v.trim().parse().map_err(|_| bad("content-length")))
            .transpose()?
            .unwrap_or(0);
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("chunk size"))?;
        if body.len() + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                if line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// The basic auth user when the request carries the token as its password.
fn authorize(head: &Head, auth: &Auth) -> Option<String> {
    let token = auth.token.as_ref()?;
    let value = head.header("authorization")?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (password == token).then(|| user.to_string())
}

/// Standard base64 (with padding), enough for an Authorization header.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

/// Runs `git http-backend` for one request and streams its answer; the status it gave.
fn cgi(
    out: &mut TcpStream,
    root: &Path,
    head: &Head,
    body: Vec<u8>,
    user: Option<&str>,
    auth: &Auth,
) -> io::Result<u16> {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &head.method)
        .env("PATH_INFO", &head.path)
        .env("QUERY_STRING", &head.query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = head.header("content-type") {
        cmd.env("CONTENT_TYPE", t);
    }
    if let Some(e) = head.header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", e);
    }
    if let Some(p) = head.header("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    match user {
        Some(u) => {
            cmd.env("REMOTE_USER", u);
        }
        // Without auth configured anyone may push (http-backend wants a user otherwise).
        None if auth.token.is_none() => {
            cmd.env("REMOTE_USER", "anonymous");
        }
        None => {}
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("piped"));
    let mut status = 200u16;
    let mut reason = "OK".to_string();
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => {
                let v = v.trim();
                let (code, why) = v.split_once(' ').unwrap_or((v, ""));
                status = code.parse().unwrap_or(500);
                reason = why.to_string();
            }
            Some(_) => {
                headers.push_str(line);
                headers.push_str("\r\n");
            }
            None => {}
        }
    }
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\n{headers}Transfer-Encoding: chunked\r\n\r\n"
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        write!(out, "{n:x}\r\n")?;
        out.write_all(&buf[..n])?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")?;
    let _ = writer.join();
    let _ = child.wait();
    Ok(status)
}

/// Runs `git` in `dir` isolated from the user's and system's configuration, with a fixed
/// identity and dates (so generated history is the same on every run); its stdout, or an
/// error carrying its stderr.
pub fn git(dir: &Path, args: &[&str]) -> io::Result<String> {
    git_env(dir, args, &[])
}

/// [`git`] with extra environment.
pub fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> io::Result<String> {
    let out = git_command(dir, args, env).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "git {args:?} in {}: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

/// The `git` command [`git`] runs, for callers that want its status and both outputs.
pub fn git_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("GIT_AUTHOR_NAME", "bottle")
        .env("GIT_AUTHOR_EMAIL", "bottle@example.invalid")
        .env("GIT_COMMITTER_NAME", "bottle")
        .env("GIT_COMMITTER_EMAIL", "bottle@example.invalid")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Makes `<root>/<name>.git`, a bare repository whose default branch `main` holds one commit
/// with `files` (path, content); the commit's id.
pub fn init_repo(root: &Path, name: &str, files: &[(&str, &str)]) -> io::Result<String> {
    let bare = root.join(format!("{name}.git"));
    std::fs::create_dir_all(&bare)?;
    git(&bare, &["init", "-q", "--bare", "-b", "main"])?;
    let work = root.join(format!(".work-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    git(&work, &["init", "-q", "-b", "main"])?;
    for (path, content) in files {
        let p = work.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, content)?;
    }
    git(&work, &["add", "-A"])?;
    git(
        &work,
        &["commit", "-q", "-m", &format!("{name}: first commit")],
    )?;
    let bare_s = bare.to_string_lossy().into_owned();
    git(&work, &["push", "-q", &bare_s, "main"])?;
    let id = git(&work, &["rev-parse", "HEAD"])?.trim().to_string();
    std::fs::remove_dir_all(&work)?;
    Ok(id)
}

/// The id `reference` has in the bare repository `repo`, or `None`.
pub fn ref_id(repo: &Path, reference: &str) -> Option<String> {
    git(repo, &["rev-parse", "--verify", "-q", reference])
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("eDp0b2tlbg==").unwrap(), b"x:token");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("**").is_none());
    }

    /// A real clone and an authenticated push through the server, and a push without the token
    /// refused.
    #[test]
    fn clone_and_push_through_http_backend() {
        let root = std::env::temp_dir().join(format!("bottle-git-upstream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let first = init_repo(&root, "app", &[("README", "hello\n")]).unwrap();
        let up = Upstream::start(
            "127.0.0.1:0".parse().unwrap(),
            &root,
            Auth {
                token: Some("tok-123".into()),
                private: false,
            },
        )
        .unwrap();
        let work = root.join("clone");
        let url = up.url("app");
        git(&root, &["clone", "-q", &url, "clone"]).unwrap();
        assert_eq!(git(&work, &["rev-parse", "HEAD"]).unwrap().trim(), first);
        std::fs::write(work.join("b"), "b\n").unwrap();
        git(&work, &["add", "b"]).unwrap();
        git(&work, &["commit", "-q", "-m", "b"]).unwrap();
        let refused = git(&work, &["push", "-q", "origin", "HEAD:refs/heads/x"]).unwrap_err();
        // git asks for a user name on the 401, and may not prompt.
        assert!(refused.to_string().contains("Username"), "{refused}");
        assert_eq!(ref_id(&up.repo("app"), "refs/heads/x"), None);
        let authed = url.replace("http://", "http://u:tok-123@");
        git(&work, &["push", "-q", &authed, "HEAD:refs/heads/x"]).unwrap();
        let head = git(&work, &["rev-parse", "HEAD"]).unwrap();
        assert_eq!(
            ref_id(&up.repo("app"), "refs/heads/x").as_deref(),
            Some(head.trim())
        );
        assert!(up
            .log()
            .iter()
            .any(|l| l.is_push() && l.user.as_deref() == Some("u")));
        drop(up);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
