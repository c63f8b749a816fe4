//! Where policies come from, as configured: Gatehouse's `policies` section, or Cerbos's
//! `storage` section (`driver: disk` or `driver: git`) so a Cerbos configuration file
//! works unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::GitSource;

/// `policies`: a directory or a git repository.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PoliciesSection {
    /// The policy directory.
    #[serde(default)]
    pub(crate) directory: Option<PathBuf>,
    /// A git repository instead of a directory.
    #[serde(default)]
    git: Option<GitSection>,
    /// Reload when files change (directory source).
    #[serde(default = "default_true")]
    watch_for_changes: bool,
    /// How often the directory is checked for changes, milliseconds.
    #[serde(default = "default_watch_interval")]
    watch_interval_ms: u64,
}

/// `policies.git`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GitSection {
    /// Repository URL. Credentials come from git's own configuration (credential
    /// helpers, ssh-agent, `~/.ssh/config`), never from this file.
    url: String,
    /// Branch to follow.
    #[serde(default = "default_branch")]
    branch: String,
    /// Directory of the policies inside the repository.
    #[serde(default)]
    sub_dir: PathBuf,
    /// Where the repository is checked out (Gatehouse owns it). Default: a directory
    /// under the system temp directory named after the URL and branch.
    #[serde(default)]
    checkout_dir: Option<PathBuf>,
    /// How often the branch is fetched, milliseconds; 0 turns polling off (SIGHUP still
    /// fetches).
    #[serde(default = "default_git_poll")]
    poll_interval_ms: u64,
    /// Bound on each git operation, milliseconds.
    #[serde(default = "default_git_timeout")]
    operation_timeout_ms: u64,
}

/// `storage` (Cerbos's keys): the `disk` and `git` drivers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StorageSection {
    /// Storage driver: `disk` or `git`.
    driver: String,
    /// The disk driver's settings.
    #[serde(default)]
    disk: Option<DiskStorage>,
    /// The git driver's settings.
    #[serde(default)]
    git: Option<CerbosGitStorage>,
}

/// `storage.disk`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DiskStorage {
    /// Policy directory.
    directory: PathBuf,
    /// Reload on change.
    #[serde(default)]
    watch_for_changes: bool,
}

/// `storage.git`, with Cerbos's keys and defaults (branch `master`, durations as Go
/// duration strings such as `60s`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CerbosGitStorage {
    /// `file`, `https` or `ssh`: only checked against the URL's form.
    #[serde(default)]
    protocol: Option<String>,
    /// Repository URL.
    url: String,
    /// Branch.
    #[serde(default)]
    branch: Option<String>,
    /// Policy directory inside the repository.
    #[serde(default)]
    sub_dir: Option<PathBuf>,
    /// Checkout directory.
    #[serde(default)]
    checkout_dir: Option<PathBuf>,
    /// Poll interval (`60s`; `0` turns polling off).
    #[serde(default)]
    update_poll_interval: Option<String>,
    /// Bound on each git operation (`60s`).
    #[serde(default)]
    operation_timeout: Option<String>,
    /// Cerbos's inline https credentials: refused (use a git credential helper).
    #[serde(default)]
    https: Option<serde_json::Value>,
    /// Cerbos's inline ssh key settings: refused (use ssh-agent or `~/.ssh/config`).
    #[serde(default)]
    ssh: Option<serde_json::Value>,
}

/// A resolved policy source.
#[derive(Clone, Debug)]
pub(crate) enum SourceConfig {
    /// A local directory.
    Directory {
        /// The directory.
        path: PathBuf,
        /// Poll interval for changes; `None` when not watched.
        watch: Option<Duration>,
    },
    /// A git repository.
    Git {
        /// The repository.
        source: GitSource,
        /// Poll interval; `None` when not polled.
        poll: Option<Duration>,
    },
}

fn default_true() -> bool {
    true
}

fn default_watch_interval() -> u64 {
    500
}

fn default_branch() -> String {
    "main".into()
}

fn default_git_poll() -> u64 {
    60_000
}

fn default_git_timeout() -> u64 {
    60_000
}

/// Resolves the configured source; relative paths are taken from `base` (the
/// configuration file's directory).
pub(crate) fn source_config(
    policies: Option<&PoliciesSection>,
    storage: Option<&StorageSection>,
    base: &Path,
) -> Result<SourceConfig, String> {
    match (policies, storage) {
        (Some(p), None) => policies_source(p, base),
        (None, Some(s)) => storage_source(s, base),
        (Some(_), Some(_)) => Err("give `policies` or `storage`, not both".into()),
        (None, None) => Err(
            "no policy source: give `policies.directory` (or Cerbos's `storage.disk.directory`)"
                .into(),
        ),
    }
}

/// Gatehouse's own `policies` section: a directory or a git repository.
fn policies_source(p: &PoliciesSection, base: &Path) -> Result<SourceConfig, String> {
    match (&p.directory, &p.git) {
        // (`join` keeps an absolute path as it is.)
        (Some(dir), None) => Ok(SourceConfig::Directory {
            path: base.join(dir),
            watch: p
                .watch_for_changes
                .then(|| Duration::from_millis(p.watch_interval_ms.max(50))),
        }),
        (None, Some(g)) => Ok(git_source(
            base,
            GitSettings {
                url: &g.url,
                branch: &g.branch,
                sub_dir: &g.sub_dir,
                checkout: g.checkout_dir.as_ref(),
                poll: Duration::from_millis(g.poll_interval_ms),
                timeout: Duration::from_millis(g.operation_timeout_ms),
            },
        )),
        (Some(_), Some(_)) => Err("give `policies.directory` or `policies.git`, not both".into()),
        (None, None) => Err("`policies` needs `directory` or `git`".into()),
    }
}

/// Cerbos's `storage` section: the `disk` and `git` drivers.
fn storage_source(s: &StorageSection, base: &Path) -> Result<SourceConfig, String> {
    match s.driver.as_str() {
        "disk" => {
            let disk = s
                .disk
                .as_ref()
                .ok_or("storage.disk.directory is required")?;
            Ok(SourceConfig::Directory {
                path: base.join(&disk.directory),
                watch: disk
                    .watch_for_changes
                    .then(|| Duration::from_millis(default_watch_interval())),
            })
        }
        "git" => {
            let g = s.git.as_ref().ok_or("storage.git.url is required")?;
            storage_git_source(g, base)
        }
        other => Err(format!(
            "storage.driver {other:?} is not supported: Gatehouse reads policies from disk or git"
        )),
    }
}

/// `storage.git`: credentials are git's own business, so `https` and `ssh` are refused.
fn storage_git_source(g: &CerbosGitStorage, base: &Path) -> Result<SourceConfig, String> {
    if g.https.is_some() || g.ssh.is_some() {
        return Err("storage.git.https and storage.git.ssh are not supported: \
             Gatehouse runs git, so give credentials through a git credential \
             helper, ssh-agent or ~/.ssh/config"
            .into());
    }
    if let Some(protocol) = &g.protocol
        && !["file", "https", "ssh"].contains(&protocol.as_str())
    {
        return Err(format!(
            "storage.git.protocol {protocol:?}: expected file, https or ssh"
        ));
    }
    let duration = |key: &str, v: &Option<String>| match v {
        None => Ok(Duration::from_secs(60)),
        Some(text) => parse_go_duration(text)
            .ok_or_else(|| format!("storage.git.{key}: {text:?} is not a duration")),
    };
    Ok(git_source(
        base,
        GitSettings {
            url: &g.url,
            branch: g.branch.as_deref().unwrap_or("master"),
            sub_dir: g.sub_dir.as_deref().unwrap_or(Path::new("")),
            checkout: g.checkout_dir.as_ref(),
            poll: duration("updatePollInterval", &g.update_poll_interval)?,
            timeout: duration("operationTimeout", &g.operation_timeout)?,
        },
    ))
}

/// A git source's settings, from either section.
struct GitSettings<'a> {
    url: &'a str,
    branch: &'a str,
    sub_dir: &'a Path,
    checkout: Option<&'a PathBuf>,
    poll: Duration,
    timeout: Duration,
}

/// A git source (its checkout under `base`), its timeout at least 100 ms and its polling
/// interval at least 50 ms (none when zero).
fn git_source(base: &Path, g: GitSettings<'_>) -> SourceConfig {
    let mut source = GitSource::new(g.url, g.branch);
    source.sub_dir = g.sub_dir.to_path_buf();
    if let Some(dir) = g.checkout {
        source.checkout_dir = base.join(dir);
    }
    source.operation_timeout = g.timeout.max(Duration::from_millis(100));
    SourceConfig::Git {
        source,
        poll: (!g.poll.is_zero()).then_some(g.poll.max(Duration::from_millis(50))),
    }
}

/// A Go duration (`1h30m`, `60s`, `500ms`, `0`), as Cerbos's configuration writes them;
/// read by the same parser as CEL's `duration()`. Negative durations are refused.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    crate::cel::functions::std_lib_format::parse_duration(text.trim())
        .ok()?
        .to_std()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "5 s", "1d", "s", "-1s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn cerbos_git_storage_is_read_with_cerbos_defaults() {
        let s: StorageSection = parse(
            "driver: git\ngit:\n  protocol: file\n  url: file:///srv/policies.git\n  subDir: p\n  checkoutDir: work\n  updatePollInterval: 10s\n",
        );
        let SourceConfig::Git { source, poll } =
            source_config(None, Some(&s), Path::new("/etc/gatehouse")).unwrap()
        else {
            panic!("a git source");
        };
        assert_eq!(source.branch, "master");
        assert_eq!(source.sub_dir, PathBuf::from("p"));
        assert_eq!(source.checkout_dir, PathBuf::from("/etc/gatehouse/work"));
        assert_eq!(source.operation_timeout, Duration::from_secs(60));
        assert_eq!(poll, Some(Duration::from_secs(10)));

        let s: StorageSection =
            parse("driver: git\ngit: {url: x, https: {username: u, password: p}}\n");
        let e = source_config(None, Some(&s), Path::new(".")).unwrap_err();
        assert!(e.contains("credential helper"), "{e}");
        let s: StorageSection = parse("driver: git\ngit: {url: x, updatePollInterval: soon}\n");
        assert!(source_config(None, Some(&s), Path::new(".")).is_err());
        let s: StorageSection = parse("driver: hub\n");
        let e = source_config(None, Some(&s), Path::new(".")).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn gatehouse_git_section() {
        let p: PoliciesSection =
            parse("git: {url: 'https://git.example.com/p.git', pollIntervalMs: 0}\n");
        let SourceConfig::Git { source, poll } =
            source_config(Some(&p), None, Path::new(".")).unwrap()
        else {
            panic!("a git source");
        };
        assert_eq!(source.branch, "main");
        assert_eq!(poll, None);
        let p: PoliciesSection = parse("directory: p\ngit: {url: x}\n");
        assert!(source_config(Some(&p), None, Path::new(".")).is_err());
        let p: PoliciesSection = parse("watchForChanges: false\n");
        assert!(source_config(Some(&p), None, Path::new(".")).is_err());
    }
}
