//! The `audit` section of `gatehouse.yaml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::mask::MaskPath;
use super::sink::AuditError;

/// Default capacity of the queue between decisions and the writer thread.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// The `audit` section: which decisions are logged, where, and how much of them.
///
/// ```yaml
/// audit:
///   mode: sampled            # off | sampled | all
///   sampleRate: 0.1          # 0..1, required with `sampled`
///   output: file             # stdout | file
///   file: {path: /var/log/gatehouse/audit.log, maxBytes: 104857600, keep: 5}
///   includeAttributes: true  # principal and resource attributes (default false)
///   maskPaths: [principal.attr.email, resource.attr.owner]
///   queueCapacity: 4096      # records waiting for the writer
///   whenFull: drop           # drop | block: what a decision does when the queue is full
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// Which decisions are logged.
    #[serde(default)]
    pub(crate) mode: AuditMode,
    /// Cerbos's switch: `true` logs every decision unless `mode` says otherwise,
    /// `false` turns the log off.
    #[serde(default)]
    enabled: Option<bool>,
    /// Fraction of decisions logged in `sampled` mode, 0 to 1.
    #[serde(default)]
    sample_rate: Option<f64>,
    /// Where lines go.
    #[serde(default)]
    pub(crate) output: AuditOutput,
    /// The file output (required with `output: file`).
    #[serde(default)]
    pub(crate) file: Option<AuditFileConfig>,
    /// Dotted paths (rooted at `principal` or `resource`) whose values are replaced by
    /// `"***"`; a `*` segment matches any key.
    #[serde(default)]
    mask_paths: Vec<String>,
    /// Log principal and resource attributes (masked by `maskPaths`).
    #[serde(default)]
    pub(crate) include_attributes: bool,
    /// Records waiting for the writer; when full, `whenFull` applies.
    #[serde(default = "default_queue_capacity")]
    pub(crate) queue_capacity: usize,
    /// What recording does when the queue is full.
    #[serde(default)]
    pub(crate) when_full: WhenFull,
}

/// What recording a decision does when the writer's queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WhenFull {
    /// Drop the record, count it in `gatehouse_audit_dropped_total` and log how many were
    /// dropped (at most once a second): decisions never wait for the log.
    #[default]
    Drop,
    /// Wait for room: no record is lost, but decisions slow down to the writer's pace.
    Block,
}

fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: None,
            mode: AuditMode::Off,
            sample_rate: None,
            output: AuditOutput::Stdout,
            file: None,
            mask_paths: Vec::new(),
            include_attributes: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            when_full: WhenFull::Drop,
        }
    }
}

/// Which decisions are logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuditMode {
    /// None.
    #[default]
    Off,
    /// A random fraction (`sampleRate`).
    Sampled,
    /// Every decision.
    All,
}

/// Where audit lines go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuditOutput {
    /// Standard output (service logs go to standard error).
    #[default]
    Stdout,
    /// A file with size-based rotation.
    File,
}

/// A rotating audit file: `path` is written until the next line would pass `maxBytes`,
/// then renamed `path.1` (older files shift to `path.2` ... `path.<keep>`, the oldest is
/// deleted) and a fresh `path` is started.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditFileConfig {
    /// The file.
    pub(crate) path: PathBuf,
    /// Size at which the file is rotated, bytes.
    #[serde(default = "default_max_bytes")]
    pub(crate) max_bytes: u64,
    /// Rotated files kept.
    #[serde(default = "default_keep")]
    pub(crate) keep: usize,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_keep() -> usize {
    5
}

/// The validated settings the sink runs with.
#[derive(Debug)]
pub(crate) struct Checked {
    /// `None`: every decision; `Some(t)`: a decision is kept when a random u64 is below `t`.
    pub(crate) threshold: Option<u64>,
    pub(crate) masks: Vec<MaskPath>,
}

impl AuditConfig {
    /// Resolves a relative file path against `base` (the configuration's directory).
    pub(crate) fn resolve_paths(mut self, base: &Path) -> Self {
        match self.enabled {
            Some(false) => self.mode = AuditMode::Off,
            Some(true) if self.mode == AuditMode::Off => self.mode = AuditMode::All,
            _ => {}
        }
        if let Some(f) = &mut self.file
            && f.path.is_relative()
        {
            f.path = base.join(&f.path);
        }
        self
    }

    /// Checks the settings; every problem is reported, prefixed with its key.
    pub(crate) fn check(&self) -> Result<Checked, AuditError> {
        let mut problems = Vec::new();
        let threshold = match (self.mode, self.sample_rate) {
            (AuditMode::Sampled, None) => {
                problems.push("audit.sampleRate is required with mode `sampled`".to_string());
                None
            }
            (_, Some(r)) if !(0.0..=1.0).contains(&r) => {
                problems.push(format!("audit.sampleRate {r} is not between 0 and 1"));
                None
            }
            (AuditMode::Sampled, Some(r)) if r < 1.0 => Some((r * u64::MAX as f64) as u64),
            _ => None,
        };
        if self.output == AuditOutput::File {
            match &self.file {
                None => problems.push("audit.file is required with output `file`".into()),
                Some(f) => {
                    if f.path.as_os_str().is_empty() {
                        problems.push("audit.file.path is empty".into());
                    }
                    if f.max_bytes == 0 {
                        problems.push("audit.file.maxBytes must be positive".into());
                    }
                }
            }
        }
        if self.queue_capacity == 0 {
            problems.push("audit.queueCapacity must be positive".into());
        }
        let mut masks = Vec::new();
        for p in &self.mask_paths {
            match MaskPath::parse(p) {
                Ok(m) => masks.push(m),
                Err(e) => problems.push(format!("audit.maskPaths: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(Checked { threshold, masks })
        } else {
            Err(AuditError::Config(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> AuditConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_off_to_stdout() {
        let c = parse("{}");
        assert_eq!(c, AuditConfig::default());
        assert!(c.check().is_ok());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(
            serde_json::from_str::<AuditConfig>(r#"{"mode":"all","sampleRate":1,"oops":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<AuditConfig>(r#"{"mode":"some"}"#).is_err());
        assert!(
            serde_json::from_str::<AuditConfig>(
                r#"{"output":"file","file":{"path":"a","size":1}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn bad_settings_are_all_reported() {
        let c = parse(
            r#"{"mode":"sampled","sampleRate":1.5,"output":"file","maskPaths":["headers.x"],"queueCapacity":0}"#,
        );
        let e = c.check().unwrap_err().to_string();
        for part in [
            "sampleRate 1.5",
            "audit.file is required",
            "queueCapacity",
            "headers.x",
        ] {
            assert!(e.contains(part), "{e}");
        }
        let e = parse(r#"{"mode":"sampled"}"#)
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("sampleRate is required"), "{e}");
        let c = parse(r#"{"mode":"sampled","sampleRate":0.25}"#)
            .check()
            .unwrap();
        assert_eq!(c.threshold, Some((0.25 * u64::MAX as f64) as u64));
        let c = parse(r#"{"mode":"sampled","sampleRate":1}"#)
            .check()
            .unwrap();
        assert_eq!(c.threshold, None);
        assert_eq!(parse(r#"{"whenFull":"block"}"#).when_full, WhenFull::Block);
        assert!(serde_json::from_str::<AuditConfig>(r#"{"whenFull":"wait"}"#).is_err());
    }

    #[test]
    fn relative_file_paths_resolve_against_the_config() {
        let c = parse(r#"{"output":"file","file":{"path":"logs/audit.log"}}"#)
            .resolve_paths(Path::new("/etc/gatehouse"));
        let f = c.file.unwrap();
        assert_eq!(f.path, Path::new("/etc/gatehouse/logs/audit.log"));
        assert_eq!((f.max_bytes, f.keep), (100 * 1024 * 1024, 5));
    }
}
