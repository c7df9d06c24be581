//! One SQL dialect over two databases: SQLite (embedded, the default) and PostgreSQL
//! (for replicas). Statements are written once with `?` placeholders and use only
//! `BIGINT` and `TEXT` columns, so the same schema and migrations run on both.
//!
//! PostgreSQL connections speak TLS through rustls as libpq's `sslmode` says (`prefer` when
//! the URL does not say): `disable`, `prefer` and `require` encrypt without authenticating
//! the server (`require` with `sslrootcert=PATH` checks the chain, as libpq does),
//! `verify-ca` checks the chain to the CAs in `sslrootcert`, `verify-full` also the host name.

use std::sync::Mutex;

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V {
    /// An integer.
    I(i64),
    /// Text.
    S(String),
    /// NULL.
    Null,
}

impl V {
    /// The integer, or 0.
    pub fn int(&self) -> i64 {
        match self {
            V::I(i) => *i,
            V::S(s) => s.parse().unwrap_or(0),
            V::Null => 0,
        }
    }
    /// The text, or "".
    pub fn text(&self) -> String {
        match self {
            V::S(s) => s.clone(),
            V::I(i) => i.to_string(),
            V::Null => String::new(),
        }
    }
    /// The text, or None for NULL.
    pub fn opt(&self) -> Option<String> {
        match self {
            V::Null => None,
            v => Some(v.text()),
        }
    }
}

impl From<i64> for V {
    fn from(i: i64) -> V {
        V::I(i)
    }
}
impl From<&str> for V {
    fn from(s: &str) -> V {
        V::S(s.to_string())
    }
}
impl From<String> for V {
    fn from(s: String) -> V {
        V::S(s)
    }
}
impl From<Option<String>> for V {
    fn from(s: Option<String>) -> V {
        s.map(V::S).unwrap_or(V::Null)
    }
}

/// A database failure.
#[derive(Debug, Clone)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database: {}", self.0)
    }
}

impl std::error::Error for DbError {}

/// Statements inside one transaction.
pub trait Tx {
    /// Runs a statement; returns the number of rows changed.
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, DbError>;
    /// Runs a query; returns its rows.
    fn query(&mut self, sql: &str, params: &[V]) -> Result<Vec<Vec<V>>, DbError>;
}

/// The database behind the store.
pub enum Db {
    /// An SQLite file.
    Sqlite(Mutex<rusqlite::Connection>),
    /// A PostgreSQL server; where and how to reach it is kept for the LISTEN connection.
    Postgres(Mutex<postgres::Client>, Box<PgTarget>),
}

/// How the store reaches PostgreSQL: the connection settings and the TLS its URL asks for.
#[derive(Clone)]
pub struct PgTarget {
    url: String,
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl PgTarget {
    /// Reads a `postgres://` URL. tokio-postgres knows `sslmode` `disable`, `prefer` and
    /// `require` and no `sslrootcert`, so those two are taken off the URL here and become the
    /// TLS configuration; everything else is tokio-postgres's to read.
    pub fn parse(url: &str) -> Result<PgTarget, DbError> {
        use fleetwall_api::tls::ServerTrust;
        use postgres::config::SslMode;
        let bad = |m: String| DbError(format!("{}: {m}", redact(url)));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let (mut mode, mut root, mut rest) = (None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded =
                || fleetwall_api::http::percent_decode(value, true).ok_or_else(|| bad(format!("bad escape in {key}")));
            match key {
                "sslmode" => mode = Some(decoded()?),
                "sslrootcert" => root = Some(std::path::PathBuf::from(decoded()?)),
                _ => rest.push(pair),
            }
        }
        let mode = mode.unwrap_or_else(|| "prefer".into());
        let needs_root = || {
            root.as_deref()
                .ok_or_else(|| bad(format!("sslmode={mode} needs sslrootcert=PATH (the CA certificates to trust)")))
        };
        let (ssl_mode, trust) = match mode.as_str() {
            "disable" => (SslMode::Disable, ServerTrust::Unauthenticated),
            "prefer" => (SslMode::Prefer, ServerTrust::Unauthenticated),
            "require" => {
                (SslMode::Require, root.as_deref().map_or(ServerTrust::Unauthenticated, ServerTrust::CaFileAnyName))
            }
            "verify-ca" => (SslMode::Require, ServerTrust::CaFileAnyName(needs_root()?)),
            "verify-full" => (SslMode::Require, ServerTrust::CaFile(needs_root()?)),
            other => {
                return Err(bad(format!(
                    "sslmode={other} is not supported (disable, prefer, require, verify-ca or verify-full)"
                )))
            }
        };
        let rest = if rest.is_empty() { String::new() } else { format!("?{}", rest.join("&")) };
        let mut config: postgres::Config = format!("{base}{rest}").parse().map_err(|e| bad(format!("{e}")))?;
        config.ssl_mode(ssl_mode);
        let tls = fleetwall_api::tls::client_tls_config(trust, b"postgresql").map_err(|e| bad(e.to_string()))?;
        Ok(PgTarget { url: url.to_string(), config, tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls) })
    }

    /// A new connection.
    pub fn connect(&self) -> Result<postgres::Client, DbError> {
        self.config.connect(self.tls.clone()).map_err(|e| {
            let untrusted = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
            let hint =
                if untrusted { " (the server's certificate does not pass the check sslmode asks for)" } else { "" };
            // A refusal by the server (pg_hba.conf) reads "db error" unless its message is taken,
            // and a TLS failure only "error performing TLS handshake" without its cause.
            let why = match (e.as_db_error(), std::error::Error::source(&e)) {
                (Some(db), _) => db.message().to_string(),
                (None, Some(cause)) => format!("{e}: {cause}"),
                (None, None) => e.to_string(),
            };
            DbError(format!("cannot connect to {}: {why}{hint}", redact(&self.url)))
        })
    }
}

/// The schema, one migration per entry; applied in order, each once.
pub const MIGRATIONS: &[&str] = &[
    // 1: revisions of the fleet document, the audit log, tokens, node status.
    "CREATE TABLE revisions (revision BIGINT PRIMARY KEY, fleet TEXT NOT NULL, created_at TEXT NOT NULL, created_ms BIGINT NOT NULL);
     CREATE TABLE audit (id BIGINT PRIMARY KEY, revision BIGINT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, before TEXT, after TEXT);
     CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL);
     CREATE TABLE node_rulesets (node TEXT PRIMARY KEY, hash TEXT NOT NULL, revision BIGINT NOT NULL);
     CREATE TABLE node_status (node TEXT PRIMARY KEY, revision BIGINT NOT NULL, hash TEXT NOT NULL, applied_at TEXT NOT NULL, applied_ms BIGINT NOT NULL, error TEXT, reported_at TEXT NOT NULL)",
    // 2: private-link resources and their states.
    "CREATE TABLE privatelinks (project TEXT NOT NULL, service TEXT NOT NULL, provider TEXT NOT NULL, state TEXT NOT NULL, revision BIGINT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (project, service))",
    // 3: identities (a project or node name gets a new uid each time it is created, so a
    // token bound to a uid dies with its object), token expiry and revocation.
    "CREATE TABLE identities (uid TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, created_ms BIGINT NOT NULL, deleted_ms BIGINT);
     CREATE INDEX identities_live ON identities (kind, name, deleted_ms);
     ALTER TABLE tokens ADD COLUMN subject TEXT;
     ALTER TABLE tokens ADD COLUMN expires_ms BIGINT;
     ALTER TABLE tokens ADD COLUMN revoked_ms BIGINT",
    // 4: each service's backup key pair (RSA-3072); kept after the service is deleted,
    // since its backups may still need restoring.
    "CREATE TABLE backup_keys (project TEXT NOT NULL, service TEXT NOT NULL, public_pem TEXT NOT NULL, private_pem TEXT NOT NULL, created_ms BIGINT NOT NULL, PRIMARY KEY (project, service))",
    // 5: the fleet's history as changes (`store`): a revision keeps its delta, or now and
    // then the whole document; every revision stored before keeps its document.
    "CREATE TABLE fleet_log (revision BIGINT PRIMARY KEY, created_at TEXT NOT NULL, created_ms BIGINT NOT NULL, delta TEXT, snapshot TEXT, bytes BIGINT NOT NULL, since_snapshot BIGINT NOT NULL, snapshot_bytes BIGINT NOT NULL);
     INSERT INTO fleet_log (revision, created_at, created_ms, delta, snapshot, bytes, since_snapshot, snapshot_bytes) SELECT revision, created_at, created_ms, NULL, fleet, length(fleet), 0, length(fleet) FROM revisions;
     DROP TABLE revisions",
    // 6: operator access (`access`): requests and their certificates, the SSH CA keys,
    // the platform's access settings.
    "CREATE TABLE access_requests (id BIGINT PRIMARY KEY, requester TEXT NOT NULL, project TEXT NOT NULL, service TEXT NOT NULL, node TEXT, reason TEXT NOT NULL, duration_s BIGINT NOT NULL, public_key TEXT NOT NULL, key_fp TEXT NOT NULL, created_ms BIGINT NOT NULL, pending_until_ms BIGINT NOT NULL, customer_approval BIGINT NOT NULL, approved_by TEXT, approved_ms BIGINT, customer_by TEXT, customer_ms BIGINT, denied_by TEXT, denied_ms BIGINT, serial BIGINT, valid_after_ms BIGINT, valid_before_ms BIGINT, principals TEXT NOT NULL, source_addresses TEXT NOT NULL, certificate TEXT, ca_id BIGINT, revoked_by TEXT, revoked_ms BIGINT, state TEXT NOT NULL);
     CREATE INDEX access_requests_state ON access_requests (state);
     CREATE INDEX audit_target ON audit (target);
     CREATE TABLE ssh_ca (id BIGINT PRIMARY KEY, private_key TEXT NOT NULL, public_key TEXT NOT NULL, created_ms BIGINT NOT NULL, retired_ms BIGINT);
     CREATE TABLE access_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

struct SqliteTx<'a>(&'a rusqlite::Connection);

fn sqlite_params(params: &[V]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|p| match p {
            V::I(i) => rusqlite::types::Value::Integer(*i),
            V::S(s) => rusqlite::types::Value::Text(s.clone()),
            V::Null => rusqlite::types::Value::Null,
        })
        .collect()
}

fn sqlite_err(e: rusqlite::Error) -> DbError {
    DbError(e.to_string())
}

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, DbError> {
        let p = sqlite_params(params);
        // Cached: a write repeats a few statements once per changed node.
        let mut stmt = self.0.prepare_cached(sql).map_err(sqlite_err)?;
        stmt.execute(rusqlite::params_from_iter(p.iter())).map(|n| n as u64).map_err(sqlite_err)
    }
    fn query(&mut self, sql: &str, params: &[V]) -> Result<Vec<Vec<V>>, DbError> {
        let p = sqlite_params(params);
        let mut stmt = self.0.prepare_cached(sql).map_err(sqlite_err)?;
        let cols = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p.iter()), |row| {
                (0..cols)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Integer(i) => V::I(i),
                            rusqlite::types::ValueRef::Null => V::Null,
                            rusqlite::types::ValueRef::Text(t) => V::S(String::from_utf8_lossy(t).into_owned()),
                            rusqlite::types::ValueRef::Real(r) => V::I(r as i64),
                            rusqlite::types::ValueRef::Blob(b) => V::S(String::from_utf8_lossy(b).into_owned()),
                        })
                    })
                    .collect::<Result<Vec<V>, rusqlite::Error>>()
            })
            .map_err(sqlite_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_err)
    }
}

struct PgTx<'a, 'b>(&'a mut postgres::Transaction<'b>);

/// NULL for a column of any type (a typed `Option::None` is refused by other types).
#[derive(Debug)]
struct AnyNull;

impl postgres::types::ToSql for AnyNull {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }
    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

fn pg_params(params: &[V]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
            match p {
                V::I(i) => Box::new(*i),
                V::S(s) => Box::new(s.clone()),
                V::Null => Box::new(AnyNull),
            }
        })
        .collect()
}

fn pg_err(e: postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError(format!("{}: {}", db.code().code(), db.message())),
        None => DbError(e.to_string()),
    }
}

fn pg_rows(rows: Vec<postgres::Row>) -> Vec<Vec<V>> {
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    let t = row.columns()[i].type_();
                    let v = if *t == postgres::types::Type::INT8 {
                        row.try_get::<_, Option<i64>>(i).ok().flatten().map(V::I)
                    } else if *t == postgres::types::Type::INT4 {
                        row.try_get::<_, Option<i32>>(i).ok().flatten().map(|v| V::I(v as i64))
                    } else {
                        // Text; anything else (pg_notify's void) reads as NULL.
                        row.try_get::<_, Option<String>>(i).ok().flatten().map(V::S)
                    };
                    v.unwrap_or(V::Null)
                })
                .collect()
        })
        .collect()
}

impl Tx for PgTx<'_, '_> {
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, DbError> {
        let p = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = p.iter().map(|b| b.as_ref()).collect();
        self.0.execute(pg_sql(sql).as_str(), &refs).map_err(pg_err)
    }
    fn query(&mut self, sql: &str, params: &[V]) -> Result<Vec<Vec<V>>, DbError> {
        let p = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = p.iter().map(|b| b.as_ref()).collect();
        self.0.query(pg_sql(sql).as_str(), &refs).map(pg_rows).map_err(pg_err)
    }
}

impl Db {
    /// Opens `url`: `postgres://…` / `postgresql://…`, or a SQLite file path (optionally
    /// `sqlite:PATH`). Runs the migrations.
    pub fn open(url: &str) -> Result<Db, DbError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let target = PgTarget::parse(url)?;
            Db::Postgres(Mutex::new(target.connect()?), Box::new(target))
        } else {
            let path = url.strip_prefix("sqlite:").unwrap_or(url);
            private_sqlite_files(std::path::Path::new(path))?;
            let conn = rusqlite::Connection::open(path).map_err(|e| DbError(format!("cannot open {path}: {e}")))?;
            conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;")
                .map_err(sqlite_err)?;
            Db::Sqlite(Mutex::new(conn))
        };
        db.migrate()?;
        Ok(db)
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(..) => "postgres",
        }
    }

    fn migrate(&self) -> Result<(), DbError> {
        self.write(|tx| {
            tx.exec("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)", &[])?;
            let have = tx.query("SELECT max(version) FROM schema_version", &[])?;
            let have = have.first().and_then(|r| r.first()).map(V::int).unwrap_or(0) as usize;
            for (i, m) in MIGRATIONS.iter().enumerate().skip(have) {
                for stmt in m.split(';').filter(|s| !s.trim().is_empty()) {
                    tx.exec(stmt, &[])?;
                }
                tx.exec("INSERT INTO schema_version (version) VALUES (?)", &[V::I(i as i64 + 1)])?;
            }
            Ok(())
        })
    }

    /// Runs `f` in a write transaction that excludes every other writer, also other
    /// replicas on the same PostgreSQL (an advisory lock); commits when `f` returns Ok.
    pub fn write<R>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, DbError>) -> Result<R, DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sqlite_err)?;
                let r = f(&mut SqliteTx(&tx))?;
                tx.commit().map_err(sqlite_err)?;
                Ok(r)
            }
            Db::Postgres(c, _) => {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                let mut tx = c.transaction().map_err(pg_err)?;
                tx.execute("SELECT pg_advisory_xact_lock(7301)", &[]).map_err(pg_err)?;
                let r = f(&mut PgTx(&mut tx))?;
                tx.commit().map_err(pg_err)?;
                Ok(r)
            }
        }
    }

    /// Runs `f` for reading (no lock against writers).
    pub fn read<R>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, DbError>) -> Result<R, DbError> {
        match self {
            Db::Sqlite(c) => {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut SqliteTx(&c))
            }
            Db::Postgres(c, _) => {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                let mut tx = c.transaction().map_err(pg_err)?;
                let r = f(&mut PgTx(&mut tx))?;
                tx.commit().map_err(pg_err)?;
                Ok(r)
            }
        }
    }

    /// Tells other replicas that `payload` changed (PostgreSQL NOTIFY, sent on commit).
    pub fn notify(&self, tx: &mut dyn Tx, payload: &str) -> Result<(), DbError> {
        if let Db::Postgres(..) = self {
            tx.query("SELECT pg_notify('fleetwall', ?)", &[V::S(payload.to_string())])?;
        }
        Ok(())
    }

    /// Calls `on` with every payload other replicas (and this one) notify, from a thread
    /// of its own with its own connection, reconnecting when the connection drops. A no-op
    /// on SQLite, which has one server.
    pub fn listen(&self, on: impl Fn(&str) + Send + 'static) {
        let Db::Postgres(_, target) = self else { return };
        let target = PgTarget::clone(target);
        std::thread::spawn(move || loop {
            match target.connect() {
                Ok(mut client) => {
                    if client.batch_execute("LISTEN fleetwall").is_ok() {
                        // A notification may have been missed while reconnecting.
                        on("reconnect");
                        let mut n = client.notifications();
                        use postgres::fallible_iterator::FallibleIterator;
                        let mut it = n.blocking_iter();
                        while let Ok(Some(note)) = it.next() {
                            on(note.payload());
                        }
                    }
                }
                Err(e) => eprintln!("fleetwall: LISTEN connection: {e}"),
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        });
    }
}

/// Creates the SQLite file (and a missing directory, 0700) as 0600 before SQLite opens it,
/// and makes an existing one and its WAL and shared-memory files 0600: the store holds the
/// fleet, the audit log and token hashes. SQLite gives the WAL and shared-memory files it
/// creates the mode of the database file, so they are private from the start too.
fn private_sqlite_files(path: &std::path::Path) -> Result<(), DbError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| DbError(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| DbError(format!("cannot open {}: {e}", path.display())))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DbError(format!("cannot make {} private (mode 0600): {e}", file.display())));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_for_postgres() {
        assert_eq!(pg_sql("SELECT a FROM t WHERE b = ? AND c = ?"), "SELECT a FROM t WHERE b = $1 AND c = $2");
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(redact("postgres://fw:secret@127.0.0.1/fw"), "postgres://fw:***@127.0.0.1/fw");
        assert_eq!(redact("postgres://127.0.0.1/fw"), "postgres://127.0.0.1/fw");
    }

    #[test]
    fn postgres_tls_options_are_read_off_the_url() {
        use postgres::config::SslMode;
        let mode = |url: &str| PgTarget::parse(url).map(|t| t.config.get_ssl_mode()).map_err(|e| e.0);
        assert_eq!(mode("postgres://fw@127.0.0.1/fw"), Ok(SslMode::Prefer), "prefer when the URL does not say");
        assert_eq!(mode("postgres://fw@127.0.0.1/fw?sslmode=disable"), Ok(SslMode::Disable));
        assert_eq!(mode("postgres://fw@127.0.0.1/fw?connect_timeout=3&sslmode=require"), Ok(SslMode::Require));
        let full =
            PgTarget::parse("postgres://fw:pw@db/fw?sslmode=verify-full&sslrootcert=%2Fnone.pem&application_name=x");
        assert_eq!(full.err().map(|e| e.0), Some("postgres://fw:***@db/fw?sslmode=verify-full&sslrootcert=%2Fnone.pem&application_name=x: TLS: cannot read CA certificates /none.pem: I/O error: No such file or directory (os error 2)".to_string()));
        assert_eq!(
            mode("postgres://fw@db/fw?sslmode=verify-ca"),
            Err("postgres://fw@db/fw?sslmode=verify-ca: sslmode=verify-ca needs sslrootcert=PATH (the CA certificates to trust)".into())
        );
        assert_eq!(
            mode("postgres://fw@db/fw?sslmode=allow"),
            Err("postgres://fw@db/fw?sslmode=allow: sslmode=allow is not supported (disable, prefer, require, verify-ca or verify-full)".into())
        );
    }

    #[test]
    fn sqlite_migrates_once_and_writes_atomically() {
        let dir = std::env::temp_dir().join(format!("fw-db-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("t.db");
        let db = Db::open(path.to_str().unwrap()).unwrap();
        drop(db);
        let db = Db::open(path.to_str().unwrap()).unwrap();
        let v = db.read(|tx| tx.query("SELECT count(*) FROM schema_version", &[])).unwrap();
        assert_eq!(v[0][0], V::I(MIGRATIONS.len() as i64));
        let r: Result<(), DbError> = db.write(|tx| {
            tx.exec(
                "INSERT INTO node_rulesets (node, hash, revision) VALUES (?, ?, ?)",
                &["n1".into(), "h".into(), V::I(1)],
            )?;
            Err(DbError("rejected".into()))
        });
        assert!(r.is_err());
        let n = db.read(|tx| tx.query("SELECT count(*) FROM node_rulesets", &[])).unwrap();
        assert_eq!(n[0][0], V::I(0), "a failed write leaves nothing behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
