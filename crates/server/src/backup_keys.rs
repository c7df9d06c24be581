//! Each service's backup key pair (S11): agents encrypt a service's backups with its
//! public key; only an admin reads the private key (for a restore), and every such read
//! is an audit entry.
//!
//! A key pair is made when the service is created through the API, or on first use for
//! services that came in a whole fleet file (an RSA-3072 key takes a while to make; a
//! fleet of 2,000 services is not kept waiting for 2,000 of them). Two replicas making
//! one at once keep the first that committed.

use crate::db::V;
use crate::{audit, util, Actor, ApiError, ControlPlane};
pub use fleetwall_api::BackupKey;
use serde_json::json;

impl ControlPlane {
    /// The key pair of service `p/s` (made now if it has none yet); with `private`, the
    /// private key too, which only an admin may read, audited as `backup.key.read-private`.
    pub fn backup_key(&self, actor: &Actor, p: &str, s: &str, private: bool) -> Result<BackupKey, ApiError> {
        if private && !matches!(actor, Actor::Admin(_)) {
            return Err(ApiError::forbidden(format!(
                "{} may not read a private backup key (admin only)",
                actor.name()
            )));
        }
        let (public_pem, private_pem, created_ms) = match self.stored_key(p, s)? {
            Some(k) => k,
            None => self.make_key(actor, p, s)?,
        };
        if private {
            let now = util::now_ms();
            let target = format!("/projects/{p}/services/{s}/backup-key");
            self.db.write(|tx| {
                audit(tx, None, now, actor, "backup.key.read-private", &target, &serde_json::Value::Null, &json!({}))
            })?;
        }
        Ok(BackupKey {
            project: p.into(),
            service: s.into(),
            public_key: public_pem,
            private_key: private.then_some(private_pem),
            created_at: util::rfc3339(created_ms),
        })
    }

    fn stored_key(&self, p: &str, s: &str) -> Result<Option<(String, String, i64)>, ApiError> {
        let rows = self.db.read(|tx| {
            tx.query(
                "SELECT public_pem, private_pem, created_ms FROM backup_keys WHERE project = ? AND service = ?",
                &[p.into(), s.into()],
            )
        })?;
        Ok(rows.first().map(|r| (r[0].text(), r[1].text(), r[2].int())))
    }

    /// Makes and stores the pair of `p/s` (outside the writer lock: key generation is
    /// slow); keeps another writer's if one got there first.
    pub fn make_key(&self, actor: &Actor, p: &str, s: &str) -> Result<(String, String, i64), ApiError> {
        let pair = fleetwall_backup::generate_keypair().map_err(ApiError::internal)?;
        let now = util::now_ms();
        let target = format!("/projects/{p}/services/{s}/backup-key");
        self.db.write(|tx| {
            let have = tx.query("SELECT 1 FROM backup_keys WHERE project = ? AND service = ?", &[p.into(), s.into()])?;
            if have.is_empty() {
                tx.exec(
                    "INSERT INTO backup_keys (project, service, public_pem, private_pem, created_ms) VALUES (?, ?, ?, ?, ?)",
                    &[p.into(), s.into(), V::S(pair.public_pem.clone()), V::S(pair.private_pem.clone()), V::I(now)],
                )?;
                audit(tx, None, now, actor, "backup.key.create", &target, &serde_json::Value::Null, &json!({}))?;
            }
            Ok(())
        })?;
        self.stored_key(p, s)?.ok_or_else(|| ApiError::internal("the backup key vanished"))
    }
}
