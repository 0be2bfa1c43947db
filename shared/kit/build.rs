//! The commit this build comes from, for `economy_build_info{version,commit}`
//! (`economy_kit::metrics`; docs/operations.md, "Observability"), as the compile-time
//! variable `ECONOMY_GIT_COMMIT`:
//! - `ECONOMY_GIT_COMMIT` from the environment when set (a build without `.git`, e.g.
//!   `docker build --build-arg`);
//! - else, in release builds, `git rev-parse --short HEAD`, rebuilt when HEAD moves;
//! - else `unknown`: no git, no repository, or a development build — those do not follow
//!   HEAD, since every commit would rebuild the kit and every crate above it.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ECONOMY_GIT_COMMIT");
    let from_env = std::env::var("ECONOMY_GIT_COMMIT").ok().filter(|commit| is_commit(commit));
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let commit = from_env.or_else(|| release.then(git_commit).flatten()).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ECONOMY_GIT_COMMIT={commit}");
}

/// The short hash of HEAD, with the files that move it watched; `None` without git or a
/// repository.
fn git_commit() -> Option<String> {
    let git_dir = git(&["rev-parse", "--absolute-git-dir"])?;
    let git_dir = Path::new(&git_dir);
    let reference = git(&["symbolic-ref", "-q", "HEAD"]);
    let moved_by = ["HEAD", "packed-refs"].into_iter().chain(reference.as_deref());
    // Only files that exist: cargo reruns the script at every build for a missing one.
    for file in moved_by.map(|name| git_dir.join(name)).filter(|file| file.exists()) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    git(&["rev-parse", "--short", "HEAD"]).filter(|commit| is_commit(commit))
}

/// The trimmed output of a successful `git` command.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok().filter(|output| output.status.success())?;
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|text| !text.is_empty())
}

/// A plausible commit: 4 to 64 hexadecimal digits.
fn is_commit(text: &str) -> bool {
    (4..=64).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}
