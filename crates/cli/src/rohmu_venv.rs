//! A private Python virtualenv with rohmu from PyPI, for the interop tests and the backup
//! benchmark: created once (`python3 -m venv`, `pip install rohmu`) and reused, and a loud
//! error when it cannot be made, so a missing reference is never a silent pass.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helper script that drives rohmu's `EncryptorFile`/`DecryptorFile`.
pub const HELPER: &str = include_str!("backup_rohmu.py");

/// The venv's python, creating the venv in `dir` with rohmu when it is not there yet.
pub fn python(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    let has_rohmu =
        |p: &Path| Command::new(p).args(["-c", "import rohmu.encryptor"]).output().is_ok_and(|o| o.status.success());
    if has_rohmu(&python) {
        return Ok(python);
    }
    run(
        Command::new("python3").args(["-m", "venv"]).arg(dir),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    run(Command::new(dir.join("bin/pip")).args(["install", "--quiet", "rohmu"]), "pip install rohmu")?;
    if !has_rohmu(&python) {
        bail!("rohmu is not importable in {} after pip install", dir.display());
    }
    Ok(python)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
