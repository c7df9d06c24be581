//! The PostgreSQL store over TLS, against a throw-away PostgreSQL of this test's own (its
//! own data directory, port and certificates; stopped on drop) that accepts TCP only with
//! TLS. Needs the PostgreSQL server binaries (/usr/lib/postgresql/*/bin, which scripts/test
//! installs); without them the test fails in CI and says loudly that it skipped elsewhere.

use fleetwall_server::db::{Db, V};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The newest PostgreSQL's binaries.
fn pg_bin() -> Option<PathBuf> {
    let mut bins: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').map(|n| n.parse().ok()).collect::<Option<Vec<u32>>>()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    bins.sort();
    if let Some((_, bin)) = bins.pop() {
        return Some(bin);
    }
    let msg = "POSTGRESQL TLS TEST CANNOT RUN: no /usr/lib/postgresql/*/bin/initdb (scripts/test installs postgresql)";
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("!!!!!!!! {msg}; skipped !!!!!!!!");
    None
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program ARGS` as the postgres user when we are root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn check(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cluster's directory; stopping the postmaster by its PID and removing it on drop.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.0.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<libc::pid_t>().ok()));
        if let Some(pid) = pid {
            // SIGINT is PostgreSQL's fast shutdown; SIGKILL if that takes too long.
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            // SAFETY: signal 0 only checks that the process exists.
            while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA called `name`, and a server certificate it signs for 127.0.0.1 only (not `localhost`).
fn certificates(name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(Vec::<String>::new()).unwrap();
    server.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = server.signed_by(&key, &Issuer::new(ca, &ca_key)).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the cluster: TLS on, TCP on 127.0.0.1 only with TLS (`hostnossl … reject`).
fn start(bin: &Path, port: u16) -> (Cluster, PathBuf) {
    let dir = std::env::temp_dir().join(format!("fw-pg-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = Cluster(dir.clone());
    if is_root() {
        check(Command::new("chown").arg("postgres").arg(&dir));
    }
    let data = dir.join("data");
    check(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args(["-U", "fleetwall", "--auth=trust"]));
    let (ca, cert, key) = certificates("the server's CA");
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("other-ca.pem"), certificates("another CA").0).unwrap();
    std::fs::write(data.join("server.crt"), cert).unwrap();
    std::fs::write(data.join("server.key"), key).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
    )
    .unwrap();
    for file in ["server.crt", "server.key", "pg_hba.conf"] {
        if is_root() {
            check(Command::new("chown").arg("postgres").arg(data.join(file)));
        }
    }
    check(Command::new("chmod").arg("0600").arg(data.join("server.key")));
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
        dir.display()
    );
    check(
        as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-o", &options, "start"]),
    );
    (cluster, dir)
}

/// Whether this connection of `db` is encrypted, as the server sees it.
fn encrypted(db: &Db) -> bool {
    let rows = db
        .read(|tx| {
            tx.query(
                "SELECT CASE WHEN ssl THEN 'tls' ELSE 'plain' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
        })
        .unwrap();
    rows == vec![vec![V::S("tls".into())]]
}

#[test]
fn postgresql_connections_were_never_tls() {
    let Some(bin) = pg_bin() else { return };
    let port = free_port();
    let (_cluster, dir) = start(&bin, port);
    let at = |host: &str, query: &str| format!("postgres://fleetwall@{host}:{port}/postgres{query}");
    let ca = dir.join("ca.pem");
    let other = dir.join("other-ca.pem");
    let open = |url: String| Db::open(&url).map_err(|e| e.to_string());

    let db = open(at("127.0.0.1", "?sslmode=require")).expect("sslmode=require connects");
    assert!(encrypted(&db));
    let err = open(at("127.0.0.1", "?sslmode=disable")).err().expect("the server refuses plain connections");
    assert!(err.contains("pg_hba.conf rejects connection") && err.contains("no encryption"), "{err}");
    // No sslmode: prefer, as libpq; this server has TLS, so it is used.
    assert!(encrypted(&open(at("127.0.0.1", "")).unwrap()));

    let full =
        |host: &str, root: &Path| open(at(host, &format!("?sslmode=verify-full&sslrootcert={}", root.display())));
    assert!(encrypted(&full("127.0.0.1", &ca).expect("verify-full with the server's CA connects")));
    let err = full("127.0.0.1", &other).err().expect("verify-full refuses a server of another CA");
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer")
            && err.ends_with("(the server's certificate does not pass the check sslmode asks for)"),
        "{err}"
    );
    let err = full("localhost", &ca).err().expect("verify-full refuses a certificate for other names");
    assert!(err.contains("invalid peer certificate: certificate not valid for name"), "{err}");
    let verify_ca = format!("?sslmode=verify-ca&sslrootcert={}", ca.display());
    assert!(encrypted(&open(at("localhost", &verify_ca)).expect("verify-ca does not check the name")));
    let err = open(at("127.0.0.1", &format!("?sslmode=require&sslrootcert={}", other.display()))).err();
    assert!(err.expect("require with sslrootcert checks the chain, as libpq").contains("UnknownIssuer"));

    // The LISTEN connection (replicas waking each other) goes the same way.
    let (tx, rx) = std::sync::mpsc::channel();
    db.listen(move |payload| {
        let _ = tx.send(payload.to_string());
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).as_deref(), Ok("reconnect"), "LISTEN connected");
    db.write(|tx| db.notify(tx, "ping")).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).as_deref(), Ok("ping"));
}
