//! The node's SSH trust (S10): the control plane's SSH CA keys, the revoked operator
//! keys and, per login name, the certificate principals this node accepts, written where
//! sshd reads them (`TrustedUserCAKeys DIR/trusted_user_ca_keys`, `RevokedKeys
//! DIR/revoked_keys`, `AuthorizedPrincipalsFile DIR/principals/%u`). A long-poll of `GET /v1/nodes/{node}/ssh-trust`
//! returns as soon as either changes (a revoke, a CA rotation), so a revoke reaches the
//! node within one round trip.
//!
//! What the server sends is checked before anything is written: every line of either
//! file must be an OpenSSH public key (or a `#` comment), the CA list must not be empty
//! (sshd with an empty `TrustedUserCAKeys` trusts nobody, which is safe, but a server
//! sending none is broken, and the last good files stay), and each file is replaced whole
//! (temporary file, fsync, rename), so sshd never reads half a file.

use fleetwall_api::http::Client;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The file sshd's `TrustedUserCAKeys` names, in the trust directory.
pub const TRUSTED_CA_FILE: &str = "trusted_user_ca_keys";
/// The file sshd's `RevokedKeys` names, in the trust directory.
pub const REVOKED_FILE: &str = "revoked_keys";
/// The directory of the principals files (`AuthorizedPrincipalsFile DIR/principals/%u`).
pub const PRINCIPALS_DIR: &str = "principals";
/// The longest line of either file.
const MAX_LINE: usize = 16 << 10;

/// The server's answer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Trust {
    /// `TrustedUserCAKeys`.
    pub trusted_user_ca_keys: String,
    /// `RevokedKeys`.
    pub revoked_keys: String,
    /// Per login name, the principals file's text.
    #[serde(default)]
    pub authorized_principals: std::collections::BTreeMap<String, String>,
    /// Their hash, to long-poll with.
    pub hash: String,
}

/// Whether every line of `text` is a public key line (`ssh-… BASE64 [comment]`) or a
/// comment; returns how many keys.
fn check_keys(what: &str, text: &str) -> Result<usize, String> {
    let mut keys = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_LINE || line.chars().any(char::is_control) {
            return Err(format!("{what} line {}: not a public key line", i + 1));
        }
        let mut words = line.split(' ');
        let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
            return Err(format!("{what} line {}: not a public key line", i + 1));
        };
        let kind_ok = matches!(
            kind,
            "ssh-ed25519" | "ssh-rsa" | "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521"
        );
        let blob_ok =
            !blob.is_empty() && blob.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !kind_ok || !blob_ok {
            return Err(format!("{what} line {}: not a public key line ({kind})", i + 1));
        }
        keys += 1;
    }
    Ok(keys)
}

impl Trust {
    /// Refuses an answer that is not two lists of keys, or trusts no CA.
    pub fn validate(&self) -> Result<(), String> {
        if check_keys(TRUSTED_CA_FILE, &self.trusted_user_ca_keys)? == 0 {
            return Err(format!("{TRUSTED_CA_FILE}: the server sent no CA key"));
        }
        check_keys(REVOKED_FILE, &self.revoked_keys)?;
        for (login, text) in &self.authorized_principals {
            let name_ok = !login.is_empty()
                && login.len() <= 32
                && !login.starts_with('.')
                && login.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !name_ok {
                return Err(format!("{PRINCIPALS_DIR}: '{login}' is not a login name"));
            }
            for line in text.lines() {
                // One principal a line, no options: nothing but the principal is taken.
                if line.is_empty() || line.len() > 200 || line.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!("{PRINCIPALS_DIR}/{login}: {line:?} is not one principal"));
                }
            }
        }
        Ok(())
    }

    /// Writes both files into `dir` (made 0755 if missing: sshd reads them as root), each
    /// whole; the revoked keys first, so a key revoked together with a CA change is never
    /// trusted in between.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write_whole(&dir.join(REVOKED_FILE), &self.revoked_keys)?;
        let principals = dir.join(PRINCIPALS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&principals)
            .map_err(|e| format!("cannot create {}: {e}", principals.display()))?;
        // A login no longer listed loses its file first: sshd then accepts no certificate for it.
        let listed =
            std::fs::read_dir(&principals).map_err(|e| format!("cannot list {}: {e}", principals.display()))?;
        for entry in listed.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !self.authorized_principals.contains_key(&name) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| format!("cannot remove {}: {e}", entry.path().display()))?;
            }
        }
        for (login, text) in &self.authorized_principals {
            write_whole(&principals.join(login), text)?;
        }
        write_whole(&dir.join(TRUSTED_CA_FILE), &self.trusted_user_ca_keys)
    }
}

fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Keeps `dir`'s trust files current for node `node` until `stop`; `on_change` hears of
/// every write (`Ok(hash)`) and failure (`Err`).
pub struct TrustKeeper {
    client: Client,
    node: String,
    dir: PathBuf,
    /// The longest long-poll.
    pub poll: Duration,
}

impl TrustKeeper {
    /// Through the agent's server, CA and token.
    pub fn new(server: &str, ca: Option<&Path>, token: &str, node: &str, dir: PathBuf) -> Result<TrustKeeper, String> {
        let client = Client::new(server, ca).map_err(|e| e.to_string())?.with_token(token);
        Ok(TrustKeeper { client, node: node.to_string(), dir, poll: Duration::from_secs(30) })
    }

    /// One exchange: waits up to `wait` for files other than `hash`'s, writes them.
    /// `Ok(None)`: unchanged.
    pub fn once(&self, hash: Option<&str>, wait: Duration) -> Result<Option<String>, String> {
        let node = fleetwall_api::http::percent_encode(&self.node);
        let path = match hash {
            Some(h) => format!("/v1/nodes/{node}/ssh-trust?hash={h}&wait={}", wait.as_secs_f64()),
            None => format!("/v1/nodes/{node}/ssh-trust"),
        };
        let resp = self
            .client
            .request_with_timeout("GET", &path, None, wait + Duration::from_secs(10))
            .map_err(|e| format!("ssh trust: {e}"))?;
        if resp.status == 304 {
            return Ok(None);
        }
        if resp.status != 200 {
            return Err(format!(
                "ssh trust: {} (status {})",
                fleetwall_api::client::error_body(&resp).message,
                resp.status
            ));
        }
        let trust: Trust =
            resp.json_body().map_err(|e| format!("ssh trust: refused an answer that does not parse: {e}"))?;
        trust.validate().map_err(|e| format!("ssh trust: refused: {e}"))?;
        if Some(trust.hash.as_str()) == hash {
            return Ok(None);
        }
        trust.write(&self.dir)?;
        Ok(Some(trust.hash))
    }

    /// Long-polls until `stop`, writing every change; retries failures after a second.
    pub fn run(&self, stop: &AtomicBool, on_change: &dyn Fn(Result<&str, &str>)) {
        // At start the files are fetched and written whatever is on disk.
        let mut hash: Option<String> = None;
        let mut first = true;
        while !stop.load(Ordering::Relaxed) {
            let wait = if first { Duration::ZERO } else { self.poll };
            let asked = if first { None } else { hash.as_deref() };
            match self.once(asked, wait) {
                Ok(Some(h)) => {
                    on_change(Ok(&h));
                    hash = Some(h);
                    first = false;
                }
                Ok(None) => first = false,
                Err(e) => {
                    on_change(Err(&e));
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_key_lines_are_accepted_and_files_are_replaced_whole() {
        let ca =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl fleetwall-ssh-ca-1\n";
        let principals = [("root".to_string(), "node:s1\nservice:acme/pg\n".to_string())].into_iter().collect();
        let good = Trust {
            trusted_user_ca_keys: ca.into(),
            revoked_keys: "# none\n".into(),
            authorized_principals: principals,
            hash: "h".into(),
        };
        good.validate().unwrap();
        let bad = [
            Trust { trusted_user_ca_keys: "# nothing\n".into(), ..good.clone() },
            Trust {
                trusted_user_ca_keys: format!("{ca}cert-authority,principals=\"x\" ssh-ed25519 AAAA\n"),
                ..good.clone()
            },
            Trust { revoked_keys: "ssh-ed25519 AA\u{1b}AA\n".into(), ..good.clone() },
            Trust { revoked_keys: "ssh-dss AAAA\n".into(), ..good.clone() },
            Trust { revoked_keys: "ssh-ed25519\n".into(), ..good.clone() },
            Trust { authorized_principals: [("../etc".into(), "x\n".into())].into_iter().collect(), ..good.clone() },
            Trust {
                authorized_principals: [("root".into(), "from=\"*\" x\n".into())].into_iter().collect(),
                ..good.clone()
            },
        ];
        for t in &bad {
            assert!(t.validate().is_err(), "{t:?}");
        }
        let dir = std::env::temp_dir().join(format!("fw-ssh-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        good.write(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(TRUSTED_CA_FILE)).unwrap(), ca);
        assert_eq!(std::fs::read_to_string(dir.join(REVOKED_FILE)).unwrap(), "# none\n");
        assert_eq!(std::fs::read_to_string(dir.join("principals/root")).unwrap(), "node:s1\nservice:acme/pg\n");
        let ops = [("ops".to_string(), "node:s1\n".to_string())].into_iter().collect();
        let again =
            Trust { revoked_keys: ca.replace("fleetwall-ssh-ca-1", "acc-1"), authorized_principals: ops, ..good };
        again.write(&dir).unwrap();
        assert!(std::fs::read_to_string(dir.join(REVOKED_FILE)).unwrap().ends_with("acc-1\n"));
        assert!(!dir.join("principals/root").exists(), "a login no longer listed has no file");
        assert!(dir.join("principals/ops").exists());
        let mut left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["principals", REVOKED_FILE, TRUSTED_CA_FILE], "no temporary files left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
