//! A git repository as a policy source: a branch of a remote, polled, checked out into a
//! directory of our own, with the policies in a sub-directory. Operations shell out to
//! the machine's `git` (its credential helpers, ssh-agent and `~/.ssh/config` apply),
//! each bounded by a timeout and never prompting.

use std::io::Read;
use std::path::{Component, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A git operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The configuration is unusable.
    #[error("git source: {0}")]
    Config(String),
    /// `git` could not be started.
    #[error("git source: cannot run git: {0}")]
    Spawn(std::io::Error),
    /// `git` ran longer than the operation timeout and was stopped.
    #[error("git source: `git {command}` timed out after {timeout:?}")]
    Timeout {
        /// The git sub-command.
        command: String,
        /// The timeout.
        timeout: Duration,
    },
    /// `git` exited with an error.
    #[error("git source: `git {command}` failed: {stderr}")]
    Failed {
        /// The git sub-command.
        command: String,
        /// What git printed on stderr.
        stderr: String,
    },
}

/// A branch of a git repository, checked out into `checkout_dir`.
#[derive(Clone, Debug)]
pub struct GitSource {
    /// Repository URL (`https://`, `ssh://`, `git@host:path`, `file://` or a path).
    pub url: String,
    /// Branch to follow.
    pub branch: String,
    /// Directory of the policies inside the repository (relative; empty for the root).
    pub sub_dir: PathBuf,
    /// Where the repository is checked out; Gatehouse owns this directory.
    pub checkout_dir: PathBuf,
    /// Bound on each git operation.
    pub operation_timeout: Duration,
}

impl GitSource {
    /// A source with the default checkout directory (under the system temp directory,
    /// named after the URL and branch) and a 60 s operation timeout.
    pub fn new(url: impl Into<String>, branch: impl Into<String>) -> GitSource {
        let url = url.into();
        let branch = branch.into();
        let checkout_dir = default_checkout_dir(&url, &branch);
        GitSource {
            url,
            branch,
            sub_dir: PathBuf::new(),
            checkout_dir,
            operation_timeout: Duration::from_secs(60),
        }
    }

    /// The URL without any password or token in it, for logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// The directory the policies are loaded from.
    pub fn policy_dir(&self) -> PathBuf {
        self.checkout_dir.join(&self.sub_dir)
    }

    /// Prepares the checkout directory, fetches the branch and checks out its head.
    /// Returns the commit.
    pub fn checkout(&self) -> Result<String, GitError> {
        self.validate()?;
        self.prepare()?;
        let commit = self.fetch()?;
        self.switch_to(&commit)?;
        Ok(commit)
    }

    /// Fetches the branch and returns the commit at its head (nothing is checked out).
    pub fn fetch(&self) -> Result<String, GitError> {
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        self.git(&["fetch", "--quiet", "--depth", "1", "origin", &refspec])?;
        let tip = format!("refs/remotes/origin/{}^{{commit}}", self.branch);
        let out = self.git(&["rev-parse", "--verify", "--quiet", &tip])?;
        Ok(out.trim().to_string())
    }

    /// Checks out `commit` (detached) and removes every file not in it.
    pub fn switch_to(&self, commit: &str) -> Result<(), GitError> {
        self.git(&["checkout", "--quiet", "--force", "--detach", commit])?;
        self.git(&["clean", "-ffdxq"])?;
        Ok(())
    }

    fn validate(&self) -> Result<(), GitError> {
        if self.url.trim().is_empty() {
            return Err(GitError::Config("url is required".into()));
        }
        if self.url.starts_with('-') || self.branch.starts_with('-') {
            return Err(GitError::Config(
                "url and branch must not start with '-'".into(),
            ));
        }
        let branch_ok = !self.branch.is_empty()
            && !self.branch.contains("..")
            && !self
                .branch
                .chars()
                .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
        if !branch_ok {
            return Err(GitError::Config(format!(
                "{:?} is not a valid branch name",
                self.branch
            )));
        }
        if self
            .sub_dir
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(GitError::Config(format!(
                "subDir {:?} must be a relative path inside the repository",
                self.sub_dir.display()
            )));
        }
        Ok(())
    }

    /// Makes `checkout_dir` a repository whose `origin` is our URL. An existing
    /// repository with another origin, or a non-empty directory that is not a
    /// repository, is refused rather than overwritten.
    fn prepare(&self) -> Result<(), GitError> {
        let dir = &self.checkout_dir;
        if dir.join(".git").is_dir() {
            let origin = self.git(&["config", "--get", "remote.origin.url"])?;
            if origin.trim() != self.url {
                return Err(GitError::Config(format!(
                    "checkout directory {} is a clone of {}, not {}",
                    dir.display(),
                    redact(origin.trim()),
                    self.redacted_url()
                )));
            }
            return Ok(());
        }
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(GitError::Config(format!(
                "checkout directory {} is not empty and not a git repository",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| GitError::Config(format!("cannot create {}: {e}", dir.display())))?;
        self.git(&["init", "--quiet"])?;
        self.git(&["remote", "add", "origin", &self.url])?;
        Ok(())
    }

    /// Runs one git command in the checkout directory, bounded by the timeout.
    fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let command = args.first().copied().unwrap_or_default().to_string();
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.checkout_dir)
            .args(["-c", "advice.detachedHead=false"])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", ssh_command())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(GitError::Spawn)?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + self.operation_timeout;
        let status = loop {
            match child.try_wait().map_err(GitError::Spawn)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(GitError::Timeout {
                        command,
                        timeout: self.operation_timeout,
                    });
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        if status.success() {
            Ok(out)
        } else {
            Err(GitError::Failed {
                command,
                stderr: redact(err.trim()),
            })
        }
    }
}

/// Reads a child's pipe to the end on a thread of its own, so a chatty command never
/// blocks on a full pipe.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

/// ssh never asks a question: no password prompts, unknown hosts are refused unless
/// the operator's own `GIT_SSH_COMMAND` says otherwise.
fn ssh_command() -> String {
    std::env::var("GIT_SSH_COMMAND").unwrap_or_else(|_| "ssh -o BatchMode=yes".into())
}

fn default_checkout_dir(url: &str, branch: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (url, branch).hash(&mut h);
    std::env::temp_dir().join(format!("gatehouse-git-{:016x}", h.finish()))
}

/// Hides the secrets of every `scheme://user:password@host` in `text`: the password,
/// and for http(s) a lone user name too (it is often a token).
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        let http = head.ends_with("http://") || head.ends_with("https://");
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None if http => out.push_str("***"),
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("https://bot:s3cr3t@git.example.com/acme/policies.git"),
            "https://bot:***@git.example.com/acme/policies.git"
        );
        assert_eq!(
            redact("fatal: unable to access 'https://ghp_token@github.com/x/y/': 403"),
            "fatal: unable to access 'https://***@github.com/x/y/': 403"
        );
        assert_eq!(redact("ssh://git@host/p.git"), "ssh://git@host/p.git");
        assert_eq!(
            redact("git@github.com:acme/p.git"),
            "git@github.com:acme/p.git"
        );
        assert_eq!(redact("file:///tmp/repo"), "file:///tmp/repo");
    }

    #[test]
    fn bad_configuration_is_refused_before_git_runs() {
        let mut s = GitSource::new("file:///nowhere", "main");
        s.sub_dir = PathBuf::from("../etc");
        assert!(matches!(s.checkout(), Err(GitError::Config(_))));
        let s = GitSource::new("--upload-pack=evil", "main");
        assert!(matches!(s.checkout(), Err(GitError::Config(_))));
        let s = GitSource::new("file:///nowhere", "main..x");
        assert!(matches!(s.checkout(), Err(GitError::Config(_))));
    }
}
