//! A git repository as a policy source: a branch of a remote, polled, checked out into a
//! directory of our own, with the policies in a sub-directory. Operations shell out to
//! the machine's `git` (its credential helpers, ssh-agent and `~/.ssh/config` apply),
//! each bounded by a timeout and never prompting.
//!
//! One process owns a checkout: it holds an exclusive lock on `.git/gatehouse.lock` for
//! its lifetime, so no other Gatehouse switches the working tree while this one
//! compiles it. A checkout directory must be ours and not writable by group or others;
//! the default one lives in a private directory (`$TMPDIR/gatehouse-<uid>`, created 0700
//! and checked to be ours), and the lock file is opened without following links.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
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
    url: String,
    /// Branch to follow.
    pub(crate) branch: String,
    /// Directory of the policies inside the repository (relative; empty for the root).
    pub(crate) sub_dir: PathBuf,
    /// Where the repository is checked out; Gatehouse owns this directory.
    pub checkout_dir: PathBuf,
    /// Bound on each git operation.
    pub operation_timeout: Duration,
    /// The exclusive lock on the checkout, once taken.
    lock: Arc<OnceLock<std::fs::File>>,
    /// `GIT_SSH_COMMAND` to set, decided once: `None` when the operator configured ssh
    /// (`GIT_SSH_COMMAND`, `GIT_SSH` or `core.sshCommand`).
    ssh: Arc<OnceLock<Option<String>>>,
}

impl GitSource {
    /// A source with the default checkout directory (in `$TMPDIR/gatehouse-<uid>`, a
    /// directory private to this user, named after the URL and branch) and a 60 s
    /// operation timeout.
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
            lock: Arc::default(),
            ssh: Arc::default(),
        }
    }

    /// The URL without any password or token in it, for logs.
    pub(crate) fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// The directory the policies are loaded from.
    pub(crate) fn policy_dir(&self) -> PathBuf {
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
    pub(crate) fn fetch(&self) -> Result<String, GitError> {
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        self.git(&["fetch", "--quiet", "--depth", "1", "origin", &refspec])?;
        let tip = format!("refs/remotes/origin/{}^{{commit}}", self.branch);
        let out = self.git(&["rev-parse", "--verify", "--quiet", &tip])?;
        Ok(out.trim().to_string())
    }

    /// Checks out `commit` (detached) and removes every file not in it.
    pub(crate) fn switch_to(&self, commit: &str) -> Result<(), GitError> {
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

    /// Makes `checkout_dir` a repository whose `origin` is our URL, locked for this
    /// process. An existing repository with another origin, a non-empty directory that is
    /// not a repository, a symlink, a directory others may write to, or a checkout locked
    /// by another process is refused rather than used.
    fn prepare(&self) -> Result<(), GitError> {
        let dir = &self.checkout_dir;
        let fresh = !dir.join(".git").is_dir();
        if dir.parent() == Some(private_base().as_path()) {
            ensure_private_dir(&private_base())?;
        }
        if fresh {
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(GitError::Config(format!(
                    "checkout directory {} is not empty and not a git repository",
                    dir.display()
                )));
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| GitError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        check_private(dir)?;
        if fresh {
            self.git(&["init", "--quiet"])?;
            if self.redacted_url() != self.url {
                tracing::warn!(
                    url = %self.redacted_url(),
                    "the repository URL carries credentials, which git keeps in {}/.git/config; prefer a git credential helper",
                    dir.display()
                );
            }
        }
        self.take_lock()?;
        remove_stale_locks(&dir.join(".git"));
        match self.git(&["config", "--get", "remote.origin.url"]) {
            Ok(origin) if origin.trim() == self.url => Ok(()),
            Ok(origin) => Err(GitError::Config(format!(
                "checkout directory {} is a clone of {}, not {}",
                dir.display(),
                redact(origin.trim()),
                self.redacted_url()
            ))),
            // No origin yet (a fresh repository, or a start that stopped half-way).
            Err(GitError::Failed { .. }) => {
                self.git(&["remote", "add", "origin", &self.url])?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Takes the checkout's lock (an `flock` on `.git/gatehouse.lock`, held for the
    /// source's life), waiting up to [`LOCK_WAIT`] for a holder to let go.
    fn take_lock(&self) -> Result<(), GitError> {
        if self.lock.get().is_some() {
            return Ok(());
        }
        let path = self.checkout_dir.join(".git/gatehouse.lock");
        let file = open_lock_file(&path)
            .map_err(|e| GitError::Config(format!("cannot open {}: {e}", path.display())))?;
        if !try_lock_for(&file, LOCK_WAIT) {
            return Err(GitError::Config(format!(
                "checkout directory {} is in use by another process; give each instance its own checkoutDir",
                self.checkout_dir.display()
            )));
        }
        let _ = self.lock.set(file);
        Ok(())
    }

    /// The `GIT_SSH_COMMAND` Gatehouse sets so that ssh never prompts, unless the
    /// operator configured ssh themselves.
    fn ssh_command(&self) -> Option<String> {
        self.ssh
            .get_or_init(|| {
                let configured = std::env::var_os("GIT_SSH_COMMAND").is_some()
                    || std::env::var_os("GIT_SSH").is_some()
                    || Command::new("git")
                        .args(["config", "--get", "core.sshCommand"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success());
                (!configured).then(|| "ssh -o BatchMode=yes".to_string())
            })
            .clone()
    }

    /// Runs one git command in the checkout directory, bounded by the timeout.
    fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let command = args.first().copied().unwrap_or_default().to_string();
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&self.checkout_dir)
            .args(["-c", "advice.detachedHead=false"])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout stops git's helpers too.
            .process_group(0);
        if let Some(ssh) = self.ssh_command() {
            cmd.env("GIT_SSH_COMMAND", ssh);
        }
        let mut child = cmd.spawn().map_err(GitError::Spawn)?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + self.operation_timeout;
        let status = loop {
            match child.try_wait().map_err(GitError::Spawn)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    stop_group(&mut child);
                    let _ = stdout.join();
                    let _ = stderr.join();
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

/// Stops a timed-out git and every helper it started (its process group): SIGTERM
/// first, so git removes its lock files, then SIGKILL after a grace period. The signals
/// are sent directly (no `kill` program, which slim images lack).
fn stop_group(child: &mut std::process::Child) {
    let Ok(group) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    // SAFETY: killpg only sends a signal; `group` is the process group of our child,
    // created with `process_group(0)`, which we have not reaped yet.
    let signal = |sig: libc::c_int| unsafe {
        libc::killpg(group, sig);
    };
    signal(libc::SIGTERM);
    let grace = Instant::now() + Duration::from_secs(2);
    while Instant::now() < grace {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(libc::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// How long [`GitSource`] waits for a checkout's lock before refusing it. A lock released a
/// moment ago can still be held: a process another thread forks holds a copy of the lock's
/// descriptor until it starts its program, and a restarted instance can start before the
/// old one has exited.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Tries to lock `file` until `wait` has passed; whether it got the lock.
fn try_lock_for(file: &std::fs::File, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if file.try_lock().is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens (creating it if needed) the lock file without following a link at `path`: a
/// new file is created exclusively (`O_EXCL`), an existing one must be a regular file of
/// ours.
fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let open = |create: bool| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).custom_flags(libc::O_NOFOLLOW).mode(0o600);
        if create {
            o.create_new(true);
        }
        o.open(path)
    };
    let file = match open(true) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(false)?,
        other => other?,
    };
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me {
        return Err(std::io::Error::other(
            "not a regular file owned by this user",
        ));
    }
    Ok(file)
}

/// The private directory default checkouts go in: `$TMPDIR/gatehouse-<uid>`.
fn private_base() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("gatehouse-{uid}"))
}

/// Creates `dir` with mode 0700 if needed, then refuses it unless it is a real directory
/// (not a link), owned by us, that nobody else may read, write or enter.
fn ensure_private_dir(dir: &Path) -> Result<(), GitError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(GitError::Config(format!(
                "cannot create {}: {e}",
                dir.display()
            )));
        }
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| GitError::Config(format!("cannot read {}: {e}", dir.display())))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(GitError::Config(format!(
            "{} is not a private directory of this user (mode 0700, not a link); remove it or set checkoutDir",
            dir.display()
        )));
    }
    Ok(())
}

/// Refuses a checkout directory that is a symlink or that group or others may write to.
fn check_private(dir: &Path) -> Result<(), GitError> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| GitError::Config(format!("cannot read {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(GitError::Config(format!(
            "checkout directory {} is not a directory (symlinks are refused)",
            dir.display()
        )));
    }
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(GitError::Config(format!(
            "checkout directory {} is owned by another user",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(GitError::Config(format!(
            "checkout directory {} is writable by group or others; chmod 700 it",
            dir.display()
        )));
    }
    Ok(())
}

/// Removes the lock files a git killed mid-operation left behind (ours is held, so no
/// other git can be running in this checkout).
fn remove_stale_locks(git_dir: &Path) {
    fn walk(dir: &Path, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if depth < 6 && (depth > 0 || name == "refs") {
                    walk(&path, depth + 1);
                }
            } else if name.ends_with(".lock") && name != "gatehouse.lock" {
                tracing::warn!(file = %path.display(), "removing a stale git lock");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    walk(git_dir, 0);
}

fn default_checkout_dir(url: &str, branch: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (url, branch).hash(&mut h);
    private_base().join(format!("git-{:016x}", h.finish()))
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

    /// A checkout's lock released while a new owner waits for it is taken (a forked child
    /// holding the descriptor for a moment does not refuse the next owner); one held
    /// throughout is refused once the wait is over.
    #[test]
    fn the_lock_is_taken_when_its_holder_lets_go_within_the_wait() {
        let dir = scratch("lock-wait");
        let path = dir.join("gatehouse.lock");
        let holder = open_lock_file(&path).unwrap();
        holder.try_lock().unwrap();
        let waiter = open_lock_file(&path).unwrap();
        assert!(!try_lock_for(&waiter, Duration::from_millis(100)));
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(holder);
        });
        assert!(try_lock_for(&waiter, Duration::from_secs(5)));
        release.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

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

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gh-git-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn issue_12_lock_file_links_are_refused() {
        let dir = scratch("lock");
        std::fs::create_dir_all(dir.join("checkout/.git")).unwrap();
        let victim = dir.join("victim");
        std::os::unix::fs::symlink(&victim, dir.join("checkout/.git/gatehouse.lock")).unwrap();
        let mut s = GitSource::new("file:///nowhere", "main");
        s.checkout_dir = dir.join("checkout");
        let e = s.take_lock().unwrap_err().to_string();
        assert!(e.contains("gatehouse.lock"), "{e}");
        assert!(!victim.exists(), "the link was followed");
        // A regular lock file is created once and reopened afterwards.
        std::fs::remove_file(dir.join("checkout/.git/gatehouse.lock")).unwrap();
        assert!(open_lock_file(&dir.join("checkout/.git/gatehouse.lock")).is_ok());
        assert!(open_lock_file(&dir.join("checkout/.git/gatehouse.lock")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issue_12_default_checkouts_live_in_a_private_directory() {
        let d = default_checkout_dir("https://example.test/p.git", "main");
        assert_eq!(d.parent(), Some(private_base().as_path()));
        let dir = scratch("private");
        let base = dir.join("base");
        ensure_private_dir(&base).unwrap();
        let mode = std::fs::metadata(&base).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            ensure_private_dir(&base).is_err(),
            "a readable directory is refused"
        );
        std::os::unix::fs::symlink(&base, dir.join("link")).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            ensure_private_dir(&dir.join("link")).is_err(),
            "a link is refused"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issue_12_timeouts_stop_the_whole_group_without_a_kill_program() {
        // A shell that started a helper in the background, as git starts ssh.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let helper: libc::pid_t = line.trim().parse().unwrap();
        stop_group(&mut child);
        // The helper was signalled too: within a moment it no longer exists.
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            // SAFETY: signal 0 only checks that the process exists.
            unsafe { libc::kill(helper, 0) != 0 }
        });
        assert!(gone, "the background helper survived");
    }
}
