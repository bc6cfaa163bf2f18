//! The first flight of a CONNECT tunnel to a TLS port: it must be a TLS ClientHello, and the
//! server name it asks for (SNI) must be the host the tunnel was allowed for.
//!
//! Why: a CDN or shared front end routes a TLS connection by its SNI, not by the address it
//! arrived at, so a tunnel allowed for `allowed.test` that carries `SNI evil.test` would reach
//! `evil.test` through `allowed.test`'s front door (domain fronting). And a tunnel to port 443
//! that does not start with a ClientHello is not TLS at all: an opaque channel to wherever.
//!
//! Only the record and handshake framing up to the `server_name` extension are read; nothing is
//! decrypted (a ClientHello is plaintext). The parser is strict: a second `server_name`
//! extension, a name list with several names or a name of another type is refused rather
//! than guessed at, since a server might read a different one than we checked.

/// The most a ClientHello may take; more is refused (real ones are a few KiB).
pub const MAX_HELLO: usize = 64 * 1024;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;

/// What a complete ClientHello asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The `host_name` of the `server_name` extension, as sent.
    pub sni: Option<String>,
}

/// Reads the ClientHello at the start of `buf`: `Ok(None)` when more bytes are needed,
/// `Err(why)` when these bytes are not a well-formed ClientHello.
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<Hello>, String> {
    // Reassemble the handshake message from as many handshake records as it spans.
    let mut message = Vec::new();
    let mut rest = buf;
    loop {
        if rest.is_empty() {
            return Ok(None);
        }
        if rest[0] != CONTENT_HANDSHAKE {
            return Err("not a TLS ClientHello".into());
        }
        if rest.len() < 5 {
            return Ok(None);
        }
        if rest[1] != 3 || rest[2] > 4 {
            return Err("not a TLS ClientHello (record version)".into());
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16_384 + 2048 {
            return Err("not a TLS ClientHello (record length)".into());
        }
        if rest.len() < 5 + len {
            return Ok(None);
        }
        message.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if message.len() >= 4 {
            if message[0] != HANDSHAKE_CLIENT_HELLO {
                return Err("not a TLS ClientHello (handshake type)".into());
            }
            let body_len = usize::from(message[1]) << 16
                | usize::from(message[2]) << 8
                | usize::from(message[3]);
            if body_len + 4 > MAX_HELLO {
                return Err("TLS ClientHello too large".into());
            }
            if message.len() >= body_len + 4 {
                return hello_body(&message[4..4 + body_len]).map(Some);
            }
        }
        if message.len() > MAX_HELLO {
            return Err("TLS ClientHello too large".into());
        }
    }
}

/// A cursor over a byte slice whose reads fail instead of panicking at the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("malformed TLS ClientHello".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize, String> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec8(&mut self) -> Result<&'a [u8], String> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn hello_body(body: &[u8]) -> Result<Hello, String> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("malformed TLS ClientHello (cipher suites)".into());
    }
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok(Hello { sni: None });
    }
    let mut exts = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return Err("malformed TLS ClientHello (trailing bytes)".into());
    }
    let mut sni = None;
    let mut seen_sni = false;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != usize::from(EXT_SERVER_NAME) {
            continue;
        }
        if seen_sni {
            return Err("TLS ClientHello with two server_name extensions".into());
        }
        seen_sni = true;
        sni = server_name(data)?;
    }
    Ok(Hello { sni })
}

/// The one `host_name` of a `server_name` extension (RFC 6066 §3).
fn server_name(data: &[u8]) -> Result<Option<String>, String> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return Err("malformed TLS server_name extension".into());
    }
    if list.0.is_empty() {
        return Ok(None);
    }
    let kind = list.u8()?;
    let name = list.vec16()?;
    if kind != 0 || !list.0.is_empty() {
        return Err("TLS server_name extension with more than one host name".into());
    }
    match std::str::from_utf8(name) {
        Ok(n) if !n.is_empty() && n.is_ascii() => Ok(Some(n.to_string())),
        _ => Err("TLS server_name that is not an ASCII host name".into()),
    }
}

/// A minimal ClientHello (one record) with `sni`, for tests here and of the proxy.
pub fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(&data);
    }
    // supported_versions: TLS 1.3, so the hello looks like a modern client's.
    exts.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![CONTENT_HANDSHAKE, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_server_name() {
        let hello = client_hello(Some("Allowed.test"));
        assert_eq!(
            parse_client_hello(&hello).unwrap(),
            Some(Hello {
                sni: Some("Allowed.test".into())
            })
        );
        assert_eq!(
            parse_client_hello(&client_hello(None)).unwrap(),
            Some(Hello { sni: None })
        );
    }

    #[test]
    fn waits_for_every_byte() {
        let hello = client_hello(Some("allowed.test"));
        for n in 0..hello.len() {
            assert_eq!(parse_client_hello(&hello[..n]), Ok(None), "{n} bytes");
        }
    }

    #[test]
    fn reassembles_a_hello_split_across_records() {
        let hello = client_hello(Some("allowed.test"));
        let hs = &hello[5..];
        let mut split = Vec::new();
        for part in [&hs[..10], &hs[10..]] {
            split.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(
            parse_client_hello(&split).unwrap().unwrap().sni.as_deref(),
            Some("allowed.test")
        );
    }

    #[track_caller]
    fn check_refused(bytes: &[u8], why: &str) {
        let e = parse_client_hello(bytes).unwrap_err();
        assert!(e.contains(why), "{e}");
    }

    #[test]
    fn refuses_what_is_not_one_clear_hello() {
        check_refused(b"GET / HTTP/1.1\r\n\r\n", "not a TLS ClientHello");
        check_refused(b"SSH-2.0-OpenSSH_9.2\r\n", "not a TLS ClientHello");
        check_refused(&[22, 3, 1, 0, 4, 2, 0, 0, 0], "handshake type");
        check_refused(&[22, 2, 0, 0, 4, 1, 0, 0, 0], "record version");
        // Two server_name extensions: the one we check might not be the one the server reads.
        let mut hello = client_hello(Some("allowed.test"));
        let ext_start = hello.len() - 7 - (2 + 2 + 2 + 1 + 2 + "allowed.test".len());
        let sni_ext = hello[ext_start..hello.len() - 7].to_vec();
        let evil = {
            let mut e = sni_ext.clone();
            let n = e.len();
            e[n - 12..].copy_from_slice(b"evil.testxyz");
            e
        };
        hello.extend_from_slice(&evil);
        // Fix the lengths: extensions, handshake body, record.
        let add = evil.len();
        let bump = |h: &mut Vec<u8>, at: usize, width: usize| {
            let mut v = 0usize;
            for i in 0..width {
                v = v << 8 | usize::from(h[at + i]);
            }
            v += add;
            for i in 0..width {
                h[at + i] = (v >> (8 * (width - 1 - i))) as u8;
            }
        };
        bump(&mut hello, 3, 2);
        bump(&mut hello, 6, 3);
        let exts_len_at = 5 + 4 + 2 + 32 + 1 + 4 + 2;
        bump(&mut hello, exts_len_at, 2);
        check_refused(&hello, "two server_name");
    }

    #[test]
    fn garbage_never_panics() {
        // Every prefix and every one-byte change of a real hello: an answer, never a panic.
        let hello = client_hello(Some("allowed.test"));
        for i in 0..hello.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut h = hello.clone();
                h[i] = b;
                let _ = parse_client_hello(&h);
            }
        }
    }
}
