//! A line-oriented file with size-based rotation.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes whole lines to `path`; before a line would take the file past `max_bytes`, the
/// file becomes `path.1`, older files shift up to `path.<keep>` and the oldest goes.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<BufWriter<File>>,
    written: u64,
}

/// `path.n`.
pub(crate) fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingFile {
    /// Opens (appending to) `path`.
    pub(crate) fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        let mut f = RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file: None,
            written: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = file.metadata().map_or(0, |m| m.len());
        self.file = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.reopen()
    }

    /// Writes `line` and a newline, rotating first when needed. After a failure the next
    /// call reopens the file.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let n = line.len() as u64 + 1;
        if self.written > 0 && self.written + n > self.max_bytes {
            self.rotate()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("audit file is not open"));
        };
        let result = f.write_all(line).and_then(|()| f.write_all(b"\n"));
        match result {
            Ok(()) => {
                self.written += n;
                Ok(())
            }
            Err(e) => {
                self.file = None;
                Err(e)
            }
        }
    }

    /// Flushes buffered lines to the file.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gh-rotate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let d = dir("keep");
        let path = d.join("audit.log");
        let mut f = RotatingFile::open(&path, 25, 2).unwrap();
        for i in 0..10 {
            f.write_line(format!("line-{i:04}").as_bytes()).unwrap();
        }
        f.flush().unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), "line-0008\nline-0009\n");
        assert_eq!(read(rotated(&path, 1)), "line-0006\nline-0007\n");
        assert_eq!(read(rotated(&path, 2)), "line-0004\nline-0005\n");
        assert!(!rotated(&path, 3).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn appends_to_an_existing_file_and_keep_zero_truncates() {
        let d = dir("zero");
        let path = d.join("audit.log");
        std::fs::write(&path, "old-line\n").unwrap();
        let mut f = RotatingFile::open(&path, 20, 0).unwrap();
        f.write_line(b"new-line").unwrap();
        f.write_line(b"next-line").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "next-line\n");
        assert!(!rotated(&path, 1).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn oversized_lines_are_written_alone() {
        let d = dir("big");
        let path = d.join("audit.log");
        let mut f = RotatingFile::open(&path, 4, 1).unwrap();
        f.write_line(b"0123456789").unwrap();
        f.write_line(b"abcdefghij").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdefghij\n");
        assert_eq!(
            std::fs::read_to_string(rotated(&path, 1)).unwrap(),
            "0123456789\n"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
