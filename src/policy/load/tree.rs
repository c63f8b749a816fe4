//! The policy tree: which files under a policy directory are read, and how. The loader,
//! the revision (content hash) and the reload fingerprint all go through [`scan`], so they
//! see the same files under the same rules:
//!
//! * only regular files are read (no devices, FIFOs or sockets);
//! * a file is at most [`MAX_FILE_BYTES`], all files together at most [`MAX_TOTAL_BYTES`],
//!   and a tree holds at most [`MAX_FILES`] files;
//! * symbolic links are followed only while they resolve inside the policy directory
//!   (Kubernetes mounts a ConfigMap as `..data -> ..2026_…` plus per-file links); a link
//!   resolving outside it is an error naming the link, and the target is never opened;
//! * a directory reached twice (a symbolic link loop) is an error, and nesting stops at
//!   [`MAX_DIR_DEPTH`].

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{LoadError, LoadErrorKind};
use crate::policy::Span;

/// Largest policy or schema file read, in bytes.
pub(crate) const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest total of the files of one tree, in bytes.
pub(crate) const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Most files in one tree.
pub(crate) const MAX_FILES: usize = 10_000;
/// Deepest directory nesting followed.
pub(crate) const MAX_DIR_DEPTH: usize = 64;

/// What a file of the tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileRole {
    /// A policy file (`.yaml`, `.yml`, `.json`).
    Policy,
    /// A test suite (`*_test.yaml`, ...): listed, not read by the loader.
    Test,
    /// A JSON schema under `_schemas/`.
    Schema,
}

/// One file the loader will read.
#[derive(Clone, Debug)]
pub(crate) struct TreeFile {
    /// Path relative to the root with `/` separators, as spans name it.
    pub(crate) rel: String,
    /// The path under the root as given (links not resolved).
    pub(crate) path: PathBuf,
    /// The resolved path, inside the root.
    real: PathBuf,
    /// Size and modification time when scanned.
    len: u64,
    modified: Option<SystemTime>,
    /// What the file is.
    pub(crate) role: FileRole,
}

/// The files of a tree and the problems found while listing them.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Files in path order.
    pub(crate) files: Vec<TreeFile>,
    /// Problems, each naming the file or directory (never its content).
    pub(crate) errors: Vec<LoadError>,
    /// Bytes that may still be read from this tree.
    budget: u64,
}

/// Lists the files of the policy tree at `root`.
pub(crate) fn scan(root: &Path) -> Tree {
    let mut tree = Tree {
        budget: MAX_TOTAL_BYTES,
        ..Tree::default()
    };
    let shown = root.display().to_string();
    let real_root = match std::fs::canonicalize(root) {
        Ok(r) => r,
        Err(e) => {
            tree.errors.push(io_error(&shown, e.to_string()));
            return tree;
        }
    };
    match std::fs::metadata(&real_root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            tree.errors
                .push(io_error(&shown, "not a directory".to_owned()));
            return tree;
        }
        Err(e) => {
            tree.errors.push(io_error(&shown, e.to_string()));
            return tree;
        }
    }
    let mut scanner = Scanner {
        root,
        real_root: &real_root,
        visited: HashSet::new(),
        tree,
    };
    scanner.walk(&real_root, "", 0, false);
    scanner.tree
}

fn io_error(file: &str, message: String) -> LoadError {
    LoadError::new(Span::new(file, 1, 1), LoadErrorKind::Io, message)
}

struct Scanner<'a> {
    root: &'a Path,
    real_root: &'a Path,
    /// Resolved directories already listed.
    visited: HashSet<PathBuf>,
    tree: Tree,
}

impl Scanner<'_> {
    fn error(&mut self, file: &str, message: impl Into<String>) {
        self.tree.errors.push(io_error(file, message.into()));
    }

    /// Lists `dir` (resolved, inside the root); `rel` is how spans name it. Under
    /// `_schemas` hidden names are read too, as Cerbos does.
    fn walk(&mut self, dir: &Path, rel: &str, depth: usize, schemas: bool) {
        let shown = if rel.is_empty() { "." } else { rel };
        if depth > MAX_DIR_DEPTH {
            self.error(shown, "directory nesting is too deep");
            return;
        }
        if !self.visited.insert(dir.to_path_buf()) {
            self.error(
                shown,
                "directory reached twice through symbolic links (a loop)",
            );
            return;
        }
        let Some(names) = self.list(dir, shown) else {
            return;
        };
        for name in names {
            if !schemas && name.starts_with('.') {
                continue;
            }
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let wanted = if schemas {
                has_extension(&name, &["json"])
            } else {
                is_policy_file(&name)
            };
            let Some((real, meta)) = self.resolve(&dir.join(&name), &child, wanted) else {
                continue;
            };
            if meta.is_dir() {
                self.subdirectory(&real, &child, &name, depth, schemas);
                continue;
            }
            let Some(role) = file_role(&name, schemas) else {
                continue;
            };
            if !meta.is_file() {
                self.error(&child, "not a regular file");
                continue;
            }
            if self.tree.files.len() >= MAX_FILES {
                self.error(&child, format!("more than {MAX_FILES} files in the tree"));
                return;
            }
            self.tree.files.push(TreeFile {
                path: self.root.join(&child),
                rel: child,
                real,
                len: meta.len(),
                modified: meta.modified().ok(),
                role,
            });
        }
    }

    /// The names in `dir`, sorted; `None` after recording why it cannot be listed.
    fn list(&mut self, dir: &Path, shown: &str) -> Option<Vec<String>> {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) => {
                self.error(shown, e.to_string());
                return None;
            }
        };
        let mut names = Vec::new();
        for entry in read {
            match entry {
                Ok(entry) => names.push(entry.file_name().to_string_lossy().into_owned()),
                Err(e) => self.error(shown, e.to_string()),
            }
        }
        names.sort();
        Some(names)
    }

    /// Walks a subdirectory: under `_schemas` every one; `_schemas` itself only at the
    /// root; `testdata` never.
    fn subdirectory(&mut self, real: &Path, child: &str, name: &str, depth: usize, schemas: bool) {
        if schemas {
            self.walk(real, child, depth + 1, true);
        } else if name == "_schemas" {
            if depth == 0 {
                self.walk(real, child, 0, true);
            } else {
                self.tree.errors.push(LoadError::new(
                    Span::new(child, 1, 1),
                    LoadErrorKind::Validation,
                    "_schemas directory must be under the root of the storage directory",
                ));
            }
        } else if name != "testdata" {
            self.walk(real, child, depth + 1, false);
        }
    }

    /// The resolved path and metadata of an entry; `None` after recording why it is
    /// refused (a link leaving the root, a loop, a dangling link). A link whose name the
    /// loader would not read (`wanted` false) is only an error when it leads to a
    /// directory.
    fn resolve(
        &mut self,
        path: &Path,
        rel: &str,
        wanted: bool,
    ) -> Option<(PathBuf, std::fs::Metadata)> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.error(rel, e.to_string());
                return None;
            }
        };
        if !meta.file_type().is_symlink() {
            return Some((path.to_path_buf(), meta));
        }
        let real = match std::fs::canonicalize(path) {
            Ok(r) => r,
            Err(_) if !wanted => return None,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.error(rel, "symbolic link loop");
                return None;
            }
            Err(e) => {
                self.error(rel, e.to_string());
                return None;
            }
        };
        if !real.starts_with(self.real_root) {
            // Only the type of the target is looked at, never its content.
            if wanted || std::fs::metadata(&real).is_ok_and(|m| m.is_dir()) {
                self.error(rel, "symbolic link resolves outside the policy directory");
            }
            return None;
        }
        match std::fs::metadata(&real) {
            Ok(m) => Some((real, m)),
            Err(e) => {
                self.error(rel, e.to_string());
                None
            }
        }
    }
}

impl Tree {
    /// Reads one file of this tree: a regular file (checked again on the open file), at
    /// most [`MAX_FILE_BYTES`], within what is left of [`MAX_TOTAL_BYTES`].
    pub(crate) fn read(&mut self, file: &TreeFile) -> Result<Vec<u8>, LoadError> {
        use std::os::unix::fs::OpenOptionsExt;
        let refuse = |message: String| io_error(&file.rel, message);
        // The resolved path has no link left; one swapped in since the scan is refused,
        // and a FIFO swapped in does not block the open.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&file.real)
            .map_err(|e| refuse(e.to_string()))?;
        let meta = opened.metadata().map_err(|e| refuse(e.to_string()))?;
        if !meta.is_file() {
            return Err(refuse("not a regular file".to_owned()));
        }
        let too_large = || refuse(format!("file is larger than {MAX_FILE_BYTES} bytes"));
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        opened
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| refuse(e.to_string()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large());
        }
        match self.budget.checked_sub(bytes.len() as u64) {
            Some(left) => self.budget = left,
            None => {
                return Err(refuse(format!(
                    "the policy files are larger than {MAX_TOTAL_BYTES} bytes in total"
                )));
            }
        }
        Ok(bytes)
    }

    /// A hash of what was listed: each file's path, resolved path, size and
    /// modification time, and the errors. A swapped `..data` link changes it.
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in &self.files {
            (&f.rel, &f.real, f.len, f.modified).hash(&mut h);
        }
        for e in &self.errors {
            e.to_string().hash(&mut h);
        }
        h.finish()
    }
}

pub(crate) fn has_extension(name: &str, exts: &[&str]) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && exts.iter().any(|e| ext.eq_ignore_ascii_case(e))
    })
}

pub(crate) fn is_policy_file(name: &str) -> bool {
    has_extension(name, &["yaml", "yml", "json"])
}

pub(crate) fn is_test_file(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(stem, _)| stem.ends_with("_test"))
}

/// What a file is for: a schema (JSON under `_schemas`), a test suite or a policy;
/// `None` for a file the loader does not read.
fn file_role(name: &str, schemas: bool) -> Option<FileRole> {
    if schemas {
        has_extension(name, &["json"]).then_some(FileRole::Schema)
    } else if !is_policy_file(name) {
        None
    } else if is_test_file(name) {
        Some(FileRole::Test)
    } else {
        Some(FileRole::Policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const POLICY: &str = "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: doc\n  version: default\n  rules:\n    - actions: [read]\n      effect: EFFECT_ALLOW\n      roles: [user]\n";

    /// A fresh directory holding `root/` (the policy tree) and `outside/`.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gh-tree-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        dir
    }

    fn errors(tree: &Tree) -> Vec<String> {
        tree.errors.iter().map(ToString::to_string).collect()
    }

    fn rels(tree: &Tree) -> Vec<&str> {
        tree.files.iter().map(|f| f.rel.as_str()).collect()
    }

    #[test]
    fn issue_12_symlink_loops_are_errors_not_endless_walks() {
        let dir = scratch("loops");
        let root = dir.join("root");
        std::fs::write(root.join("doc.yaml"), POLICY).unwrap();
        symlink(".", root.join("self")).unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        symlink("..", root.join("a/up")).unwrap();
        symlink("b.yaml", root.join("a.yaml")).unwrap();
        symlink("a.yaml", root.join("b.yaml")).unwrap();
        let tree = scan(&root);
        assert_eq!(rels(&tree), ["doc.yaml"]);
        assert_eq!(
            errors(&tree),
            [
                "a/up:1:1: directory reached twice through symbolic links (a loop)",
                "a.yaml:1:1: symbolic link loop",
                "b.yaml:1:1: symbolic link loop",
                "self:1:1: directory reached twice through symbolic links (a loop)",
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issue_12_nothing_outside_the_root_is_read() {
        let dir = scratch("outside");
        let root = dir.join("root");
        std::fs::write(dir.join("outside/secret.yaml"), "SECRET-FIRST-LINE: [\n").unwrap();
        symlink("../outside/secret.yaml", root.join("leak.yaml")).unwrap();
        symlink("/dev/zero", root.join("zero.yaml")).unwrap();
        symlink("../outside", root.join("elsewhere")).unwrap();
        // A link that is not a policy file and not a directory is never looked at.
        symlink("/etc/hostname", root.join("notes.txt")).unwrap();
        let tree = scan(&root);
        assert!(tree.files.is_empty());
        assert_eq!(
            errors(&tree),
            [
                "elsewhere:1:1: symbolic link resolves outside the policy directory",
                "leak.yaml:1:1: symbolic link resolves outside the policy directory",
                "zero.yaml:1:1: symbolic link resolves outside the policy directory",
            ]
        );
        let loaded = super::super::load_dir(&root).unwrap_err().to_string();
        assert!(!loaded.contains("SECRET"), "{loaded}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issue_12_only_regular_files_within_the_caps_are_read() {
        let dir = scratch("caps");
        let root = dir.join("root");
        let fifo = std::ffi::CString::new(root.join("pipe.yaml").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let big = vec![b'#'; MAX_FILE_BYTES as usize + 1];
        std::fs::write(root.join("big.yaml"), &big).unwrap();
        std::fs::write(root.join("doc.yaml"), POLICY).unwrap();
        let mut tree = scan(&root);
        assert_eq!(errors(&tree), ["pipe.yaml:1:1: not a regular file"]);
        let files = std::mem::take(&mut tree.files);
        assert_eq!(
            tree.read(&files[0]).unwrap_err().to_string(),
            "big.yaml:1:1: file is larger than 4194304 bytes"
        );
        assert_eq!(tree.read(&files[1]).unwrap(), POLICY.as_bytes());
        // The total cap: what is left of the budget runs out.
        tree.budget = 10;
        assert_eq!(
            tree.read(&files[1]).unwrap_err().to_string(),
            "doc.yaml:1:1: the policy files are larger than 67108864 bytes in total"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issue_12_links_inside_the_root_are_followed() {
        let dir = scratch("inside");
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("..2026_12_06_07_00_00.1/derived")).unwrap();
        std::fs::write(root.join("..2026_12_06_07_00_00.1/doc.yaml"), POLICY).unwrap();
        std::fs::write(root.join("..2026_12_06_07_00_00.1/derived/d.yaml"), POLICY).unwrap();
        symlink("..2026_12_06_07_00_00.1", root.join("..data")).unwrap();
        symlink("..data/doc.yaml", root.join("doc.yaml")).unwrap();
        symlink("..data/derived", root.join("derived")).unwrap();
        let tree = scan(&root);
        assert!(tree.errors.is_empty(), "{:?}", errors(&tree));
        assert_eq!(rels(&tree), ["derived/d.yaml", "doc.yaml"]);
        let before = tree.fingerprint();
        // An edit behind the linked directory changes the fingerprint.
        std::fs::write(
            root.join("..2026_12_06_07_00_00.1/derived/d.yaml"),
            format!("{POLICY}# edited\n"),
        )
        .unwrap();
        assert_ne!(scan(&root).fingerprint(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
