//! Records the commit and build time that `ServerInfo` reports. (The protobuf code
//! generated from `proto/` is checked in under `src/generated/`; the `proto_gen`
//! integration test keeps it in step and regenerates it.)

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=GATEHOUSE_COMMIT={}", commit());
    println!("cargo:rustc-env=GATEHOUSE_BUILD_DATE={}", build_date());
}

/// The checked-out commit (`GATEHOUSE_COMMIT` wins; `unknown` outside a git checkout).
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=GATEHOUSE_COMMIT");
    if let Ok(c) = std::env::var("GATEHOUSE_COMMIT") {
        return c;
    }
    // Watch HEAD and the branch it names where they really are: in a linked worktree
    // `.git` is a file, and a watched path that does not exist reruns this script (and so
    // recompiles the crate, the build date having changed) on every build.
    if let (Some(git_dir), Some(common_dir)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        let head = format!("{git_dir}/HEAD");
        println!("cargo:rerun-if-changed={head}");
        if let Ok(text) = std::fs::read_to_string(&head)
            && let Some(r) = text.trim().strip_prefix("ref: ")
        {
            let loose = format!("{common_dir}/{r}");
            if std::path::Path::new(&loose).exists() {
                println!("cargo:rerun-if-changed={loose}");
            } else {
                println!("cargo:rerun-if-changed={common_dir}/packed-refs");
            }
        }
    }
    git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
}

/// The trimmed output of a successful `git` command, if any.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The build time as RFC 3339 UTC (`SOURCE_DATE_EPOCH` wins, for reproducible builds).
fn build_date() -> String {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
