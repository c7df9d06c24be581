//! Who may read what `fleetwall serve` keeps on disk: its data directory is the server's
//! alone (0700) and secrets (the admin token, TLS private keys) are 0600 from the moment
//! they exist. Files and directories that already exist are tightened at every start,
//! because an older fleetwall, a restored backup or a hand-made file may have left them
//! readable by everyone; the SQLite store does the same for its own files.

use anyhow::{Context, Result};
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and missing parents as 0700; an existing directory is left as it is (it
/// may be shared, e.g. `/etc/fleetwall`).
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Creates the data directory (see [`create_dir`]), or makes an existing one 0700.
pub fn private_dir(dir: &Path) -> Result<()> {
    create_dir(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (mode 0700)", dir.display()))
}

/// Makes an existing secret 0600; a missing one is not an error.
pub fn tighten_secret(path: &Path) -> Result<()> {
    match std::fs::set_permissions(path, Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.with_context(|| format!("cannot make {} private (mode 0600)", path.display())),
    }
}

/// Writes a file with `mode` whole or not at all: a temporary file created with that mode
/// (so a secret is never readable by others, not even for a moment), synced, renamed over
/// `path`.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let _ = std::fs::remove_file(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(tmp)?;
        // The umask may have taken bits away; a public file (a certificate) still gets them.
        f.set_permissions(Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a secret (mode 0600) with a trailing newline.
pub fn write_secret(path: &Path, secret: &str) -> Result<()> {
    write_file(path, format!("{secret}\n").as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_replace_a_readable_file_and_dirs_are_tightened() {
        let dir = std::env::temp_dir().join(format!("fw-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir.join("a/b")).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!((mode(&dir), mode(&dir.join("a")), mode(&dir.join("a/b"))), (0o700, 0o700, 0o700));
        let secret = dir.join("token");
        std::fs::write(&secret, "old\n").unwrap();
        std::fs::set_permissions(&secret, Permissions::from_mode(0o644)).unwrap();
        write_secret(&secret, "new").unwrap();
        assert_eq!((mode(&secret), std::fs::read_to_string(&secret).unwrap()), (0o600, "new\n".to_string()));
        std::fs::set_permissions(&secret, Permissions::from_mode(0o644)).unwrap();
        tighten_secret(&secret).unwrap();
        tighten_secret(&dir.join("missing")).unwrap();
        assert_eq!(mode(&secret), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
