//! The git protocol's first message, read strictly, and the `ERR` packet a refusal answers with.
//!
//! A client of `git://` opens with one pkt-line naming the service and the repository:
//! `git-upload-pack /app.git\0host=gate:9418\0` and, after an empty field, extra parameters
//! such as `version=2\0`. Only `/<name>.git` and `/<name>` of a declared upstream are served;
//! anything else (`..`, `~user`, other absolute paths, undeclared names) is refused with a
//! message the git client prints as `fatal: remote error: ...`.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most data bytes one pkt-line carries (65520 with its 4-byte length).
pub const MAX_DATA: usize = 65516;

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Fetch and clone.
    UploadPack,
    /// Push.
    ReceivePack,
}

impl Service {
    /// The git command that serves it.
    pub fn command(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
        }
    }
}

/// The first message of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub service: Service,
    /// The path as sent (validated by [`repo_name`]).
    pub path: String,
    /// The protocol version the client asked for in the extra parameters (`version=2`).
    pub version: Option<u8>,
}

/// Reads one pkt-line's data; `None` when the connection ends before its first byte (a port
/// probe, such as the health check). A flush packet, a length out of range or an early end is
/// an error: a client's first message is never empty.
pub async fn read_pkt<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    let first = r
        .read(&mut len[..1])
        .await
        .map_err(|e| format!("the connection failed before a request: {e}"))?;
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..])
        .await
        .map_err(|e| format!("the connection ended within a request: {e}"))?;
    let len = std::str::from_utf8(&len)
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .filter(|n| (5..=MAX_DATA + 4).contains(n))
        .ok_or("the request does not start with a git pkt-line length")?;
    let mut data = vec![0u8; len - 4];
    r.read_exact(&mut data)
        .await
        .map_err(|e| format!("the request ended early: {e}"))?;
    Ok(Some(data))
}

/// Parses a first message: `git-<service> <path>\0host=<host>\0[\0<param>\0...]`.
pub fn parse_request(data: &[u8]) -> Result<Request, String> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let text = std::str::from_utf8(data).map_err(|_| "the request is not UTF-8".to_string())?;
    let mut fields = text.split('\0');
    let head = fields.next().unwrap_or_default();
    let (service, path) = head
        .split_once(' ')
        .ok_or("the request names no service and path")?;
    let service = match service {
        "git-upload-pack" => Service::UploadPack,
        "git-receive-pack" => Service::ReceivePack,
        other => {
            return Err(format!(
                "service {other:?} is not offered here: the gate serves fetch and push \
                 (git-upload-pack, git-receive-pack)"
            ))
        }
    };
    // After the host field, an empty field opens the extra parameters (git daemon's rule).
    let mut version = None;
    let mut extra = false;
    for field in fields {
        if field.is_empty() {
            extra = true;
        } else if extra {
            if let Some(v) = field.strip_prefix("version=") {
                version = match v {
                    "0" => Some(0),
                    "1" => Some(1),
                    "2" => Some(2),
                    // An unknown version is the client's to negotiate down: serve v0.
                    _ => None,
                };
            }
        }
    }
    Ok(Request {
        service,
        path: path.to_string(),
        version,
    })
}

/// The repository `path` names, if it is `/<name>.git` or `/<name>` of a declared upstream
/// (`declared` says which names are). The error is the message for the agent: what was
/// refused and what to use instead, `served` listing the declared names.
pub fn repo_name<'a>(
    path: &'a str,
    declared: impl Fn(&str) -> bool,
    served: &str,
) -> Result<&'a str, String> {
    let shown = format!("{path:?}");
    let hint = format!("clone $GIT_GATE_URL/<name>.git; this gate serves: {served}");
    if path.contains("..") {
        return Err(format!(
            "path {shown} is refused: '..' is not allowed; {hint}"
        ));
    }
    if path.starts_with('~') || path.starts_with("/~") {
        return Err(format!(
            "path {shown} is refused: ~user paths are not served; {hint}"
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "path {shown} is refused: it must be /<name>.git; {hint}"
        ));
    };
    let name = rest.strip_suffix(".git").unwrap_or(rest);
    if name.is_empty() || name.contains('/') || !declared(name) {
        return Err(format!("no repository at {shown}; {hint}"));
    }
    Ok(name)
}

/// An `ERR` pkt-line carrying `msg` (cut to one packet, control characters replaced): the
/// git client shows it and stops.
pub fn err_pkt(msg: &str) -> Vec<u8> {
    let mut text: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let room = MAX_DATA - "ERR \n".len();
    if text.len() > room {
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let body = format!("ERR {text}\n");
    let mut out = format!("{:04x}", body.len() + 4).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn parse(data: &[u8], expect: Result<(Service, &str, Option<u8>), &str>) {
        match (parse_request(data), expect) {
            (Ok(r), Ok((s, p, v))) => {
                assert_eq!((r.service, r.path.as_str(), r.version), (s, p, v))
            }
            (Err(e), Err(part)) => assert!(e.contains(part), "{e}"),
            (got, expect) => panic!("{data:?}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn requests() {
        use Service::*;
        parse(
            b"git-upload-pack /app.git\0host=h:1\0",
            Ok((UploadPack, "/app.git", None)),
        );
        parse(
            b"git-upload-pack /app.git\0host=h:1\0\0version=2\0",
            Ok((UploadPack, "/app.git", Some(2))),
        );
        parse(
            b"git-receive-pack /app\0host=h\0\n",
            Ok((ReceivePack, "/app", None)),
        );
        // A version before the separator is not an extra parameter.
        parse(
            b"git-upload-pack /a\0version=2\0",
            Ok((UploadPack, "/a", None)),
        );
        parse(b"git-upload-archive /a\0host=h\0", Err("not offered"));
        parse(b"git-upload-pack\0host=h\0", Err("no service and path"));
        parse(b"\xff\xfe", Err("UTF-8"));
    }

    #[track_caller]
    fn path(p: &str, expect: Result<&str, &str>) {
        let got = repo_name(p, |n| n == "app" || n == "lib.x", "app, lib.x");
        match (got, expect) {
            (Ok(n), Ok(e)) => assert_eq!(n, e),
            (Err(e), Err(part)) => {
                assert!(e.contains(part), "{p}: {e}");
                assert!(e.contains("this gate serves: app, lib.x"), "{e}");
            }
            (got, expect) => panic!("{p}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn paths() {
        path("/app.git", Ok("app"));
        path("/app", Ok("app"));
        path("/lib.x.git", Ok("lib.x"));
        path("/lib.x", Ok("lib.x"));
        path("/../app.git", Err("'..' is not allowed"));
        path("/app.git/..", Err("'..' is not allowed"));
        path("~root/app.git", Err("~user"));
        path("/~root/app.git", Err("~user"));
        path("app.git", Err("must be /<name>.git"));
        path("/other.git", Err("no repository"));
        path("/srv/app.git", Err("no repository"));
        path("//app.git", Err("no repository"));
        path("/app.git/", Err("no repository"));
        path("/.git", Err("no repository"));
        path("/", Err("no repository"));
    }

    #[test]
    fn err_packets() {
        assert_eq!(err_pkt("no"), b"000bERR no\n");
        assert_eq!(err_pkt("a\nb"), b"000cERR a b\n");
        let long = err_pkt(&"é".repeat(40_000));
        assert_eq!(long.len(), MAX_DATA + 4 - 1);
        let len = usize::from_str_radix(std::str::from_utf8(&long[..4]).unwrap(), 16).unwrap();
        assert_eq!(len, long.len());
    }
}
