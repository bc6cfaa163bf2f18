//! The git part's repositories, generated deterministically with `git fast-import`: the source
//! (about 1,000 commits and 50 MB, cached under `target/`), and the commits each push sends.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::upstream::{git, git_command};

/// The identity and date of every generated commit (the same history on every machine).
const COMMITTER: &str = "bottle <bottle@example.invalid> 1700000000 +0000";
/// The file in a finished cache directory.
const COMPLETE: &str = "bottle-bench-complete";

/// A deterministic stream of pseudo-random numbers (xorshift64*).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `n` bytes that do not compress (as a repository's binary assets do not).
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// About `n` bytes of lowercase words in lines: text that holds nothing a secret scanner
    /// could take for a credential.
    fn text(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 16);
        let mut line = 0;
        while out.len() < n {
            let len = 2 + self.next() % 8;
            for _ in 0..len {
                out.push(b'a' + (self.next() % 26) as u8);
            }
            line += len + 1;
            if line > 70 {
                out.push(b'\n');
                line = 0;
            } else {
                out.push(b' ');
            }
        }
        out.push(b'\n');
        out
    }
}

/// Writes one fast-import `data` block.
fn data(w: &mut (impl Write + ?Sized), bytes: &[u8]) -> io::Result<()> {
    writeln!(w, "data {}", bytes.len())?;
    w.write_all(bytes)?;
    writeln!(w)
}

/// Runs `git fast-import` in `repo`, feeding it what `write` writes.
fn fast_import(
    repo: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut child = git_command(repo, &["fast-import", "--quiet"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let stdin = child.stdin.take().expect("piped stdin");
        let mut w = BufWriter::with_capacity(1 << 20, stdin);
        write(&mut w)?;
        w.flush()?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "git fast-import in {}: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The source repository: a bare repository whose `main` has `commits` commits, each adding
/// one binary file (together `megabytes` MiB) and editing a text file. Generated once into
/// `cache` and reused while its parameters stay the same.
pub fn source(cache: &Path, commits: usize, megabytes: usize) -> io::Result<PathBuf> {
    let dir = cache.join(format!("source-{commits}c-{megabytes}m.git"));
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    git(&dir, &["init", "-q", "--bare", "-b", "main"])?;
    let blob = (megabytes << 20) / commits.max(1);
    let mut rng = Rng::new(1);
    fast_import(&dir, |w| {
        for i in 1..=commits {
            writeln!(
                w,
                "commit refs/heads/main\nmark :{i}\ncommitter {COMMITTER}"
            )?;
            data(w, format!("change {i}\n").as_bytes())?;
            if i > 1 {
                writeln!(w, "from :{}", i - 1)?;
            }
            writeln!(w, "M 100644 inline assets/{:03}/{i:05}.bin", i % 100)?;
            data(w, &rng.bytes(blob))?;
            writeln!(w, "M 100644 inline src/notes.txt")?;
            data(w, &rng.text(2048))?;
        }
        Ok(())
    })?;
    std::fs::write(dir.join(COMPLETE), "")?;
    Ok(dir)
}

/// Adds `count` commits on top of `base` in `repo` as branch `name`, each adding a text file of
/// about 4 KiB under `push/<name>/`; the tip's id. `seed` makes each branch's content its own.
pub fn push_branch(
    repo: &Path,
    name: &str,
    base: &str,
    count: usize,
    seed: u64,
) -> io::Result<String> {
    let mut rng = Rng::new(seed);
    fast_import(repo, |w| {
        for i in 1..=count {
            writeln!(
                w,
                "commit refs/heads/{name}\nmark :{i}\ncommitter {COMMITTER}"
            )?;
            data(w, format!("{name}: change {i}\n").as_bytes())?;
            if i == 1 {
                writeln!(w, "from {base}")?;
            } else {
                writeln!(w, "from :{}", i - 1)?;
            }
            writeln!(w, "M 100644 inline push/{name}/{i:04}.txt")?;
            data(w, &rng.text(4096))?;
        }
        Ok(())
    })?;
    Ok(git(repo, &["rev-parse", &format!("refs/heads/{name}")])?
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_same_every_time() {
        let base = std::env::temp_dir().join(format!("bottle-bench-repo-{}", std::process::id()));
        let ids: Vec<String> = ["a", "b"]
            .iter()
            .map(|d| {
                let repo = source(&base.join(d), 5, 1).unwrap();
                git(&repo, &["rev-parse", "main"]).unwrap()
            })
            .collect();
        assert_eq!(ids[0], ids[1]);
        let repo = source(&base.join("a"), 5, 1).unwrap();
        let count = git(&repo, &["rev-list", "--count", "main"]).unwrap();
        assert_eq!(count.trim(), "5");
        let tip = push_branch(&repo, "p1", ids[0].trim(), 3, 7).unwrap();
        let count = git(
            &repo,
            &["rev-list", "--count", &format!("{}..{tip}", ids[0].trim())],
        )
        .unwrap();
        assert_eq!(count.trim(), "3");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
