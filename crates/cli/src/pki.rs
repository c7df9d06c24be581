//! The control plane's own certificate authority, for `serve` off loopback without a
//! certificate of its own: a CA made once in the data directory (`ca.pem`, handed to agents
//! and the CLI as `--ca`) and a server certificate it signs (`server.pem`).
//!
//! Key decision: the CA is kept for good, since every client pins it; the server certificate is
//! re-issued whenever the names it must carry change, another CA is in place, or it nears its
//! end. The CA's name carries a digest of its key, so the issuer of a new server certificate
//! is rebuilt from the key alone and matches the CA certificate exactly.

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

const DAY: i64 = 86_400;
/// Clients pin the CA, so it outlives any deployment.
const CA_DAYS: i64 = 20 * 365;
const SERVER_DAYS: i64 = 2 * 365;
/// A server certificate this close to its end is re-issued at start.
const RENEW_DAYS: i64 = 90;
/// How far certificates are back-dated, for clients whose clocks run behind.
const SKEW_DAYS: i64 = 1;

/// A name a server certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Dns(String),
}

impl San {
    /// An IP address if `name` is one, else a DNS name.
    pub fn parse(name: &str) -> San {
        let name = name.trim_start_matches('[').trim_end_matches(']');
        match name.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip.to_canonical()),
            Err(_) => San::Dns(name.to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Ip(ip) => ip.fmt(f),
            San::Dns(name) => f.write_str(name),
        }
    }
}

/// The host part of a `--listen` address (`host:port`, `[v6]:port`).
fn listen_host(listen: &str) -> &str {
    match listen.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => listen.rsplit_once(':').map_or(listen, |(host, _)| host),
    }
}

/// Whether `listen` is on loopback only (127.0.0.0/8, ::1, localhost), where plain HTTP
/// reaches no one else. A name other than `localhost` counts as off loopback.
pub fn is_loopback(listen: &str) -> bool {
    let host = listen_host(listen);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The names the server certificate carries for `listen`: its address, or for a wildcard
/// address (0.0.0.0, ::) localhost, the loopback addresses, the host name and every address
/// of the machine's interfaces; and the `extra` names.
pub fn names_for(listen: &str, extra: &[String]) -> Result<BTreeSet<San>> {
    let host = San::parse(listen_host(listen));
    let mut names = BTreeSet::new();
    match host {
        San::Ip(ip) if ip.is_unspecified() => {
            names.insert(San::Dns("localhost".into()));
            names.insert(San::Ip(Ipv4Addr::LOCALHOST.into()));
            names.insert(San::Ip(Ipv6Addr::LOCALHOST.into()));
            if let Some(name) = hostname() {
                names.insert(San::Dns(name));
            }
            let interfaces = if_addrs::get_if_addrs().context("cannot list the machine's addresses")?;
            names.extend(interfaces.iter().map(|i| San::Ip(i.ip().to_canonical())));
        }
        San::Dns(ref name) if name.is_empty() => bail!("--listen {listen}: expected HOST:PORT"),
        host => {
            names.insert(host);
        }
    }
    for name in extra {
        let san = San::parse(name);
        if let San::Dns(dns) = &san {
            rustls_pki_types::DnsName::try_from(dns.as_str())
                .map_err(|_| anyhow!("--tls-san {name}: neither an IP address nor a DNS name"))?;
        }
        names.insert(san);
    }
    Ok(names)
}

/// The machine's host name, if it has one.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..len]).ok()?.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// The TLS material `serve` uses, and what happened to it at this start.
#[derive(Debug)]
pub struct ServerTls {
    /// The server certificate and key.
    pub files: fleetwall_server::web::TlsFiles,
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The CA certificate's SHA-256 fingerprint, `AB:CD:…` as `openssl x509 -fingerprint` shows it.
    pub fingerprint: String,
    /// Whether the CA was made now.
    pub new_ca: bool,
    /// Whether the server certificate was issued now.
    pub issued: bool,
}

/// The CA and a server certificate for `names` in `dir`: made when missing, reused when
/// they fit.
pub fn ensure(dir: &Path, names: &BTreeSet<San>) -> Result<ServerTls> {
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    let files = fleetwall_server::web::TlsFiles { cert: dir.join("server.pem"), key: dir.join("server-key.pem") };
    let now = now();
    let (ca_key, ca_der, new_ca) = match (ca_path.exists(), ca_key_path.exists()) {
        (true, true) => {
            let key = read_key(&ca_key_path)?;
            let der = read_cert(&ca_path)?;
            let cert = parse(&der, &ca_path)?;
            if spki(&cert)? != key.subject_public_key_info() {
                bail!("{} is not the certificate of the key in {}", ca_path.display(), ca_key_path.display());
            }
            (key, der, false)
        }
        (false, false) => {
            let key = KeyPair::generate().context("cannot generate the CA key")?;
            let mut params = ca_params(&key);
            params.not_before = at(now - SKEW_DAYS * DAY)?;
            params.not_after = at(now + CA_DAYS * DAY)?;
            let cert = params.self_signed(&key).context("cannot make the CA certificate")?;
            crate::datadir::write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
            crate::datadir::write_file(&ca_path, cert.pem().as_bytes(), 0o644)?;
            (key, cert.der().to_vec(), true)
        }
        (true, false) => bail!("{} exists without its key {}", ca_path.display(), ca_key_path.display()),
        (false, true) => bail!("{} exists without its certificate {}", ca_key_path.display(), ca_path.display()),
    };
    let ca_cert = parse(&ca_der, &ca_path)?;
    let ca_subject = ca_cert.tbs_certificate.subject.to_der()?;
    let reuse = !new_ca && fits(&files, &ca_subject, names, now).is_ok_and(|fits| fits);
    if !reuse {
        let key = KeyPair::generate().context("cannot generate the server key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "fleetwall control plane");
        params.subject_alt_names = names
            .iter()
            .map(|name| match name {
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                San::Dns(name) => name
                    .as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| anyhow!("--tls-san {name}: not a DNS name: {e}")),
            })
            .collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = at(now - SKEW_DAYS * DAY)?;
        params.not_after = at(now + SERVER_DAYS * DAY)?;
        let issuer = Issuer::new(ca_params(&ca_key), &ca_key);
        let cert = params.signed_by(&key, &issuer).context("cannot issue the server certificate")?;
        if parse(cert.der(), &files.cert)?.tbs_certificate.issuer.to_der()? != ca_subject {
            bail!(
                "{} was not made by fleetwall serve; give --tls-cert and --tls-key for a CA of your own",
                ca_path.display()
            );
        }
        crate::datadir::write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        crate::datadir::write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
    }
    for secret in [&ca_key_path, &files.key] {
        crate::datadir::tighten_secret(secret)?;
    }
    let fingerprint = Sha256::digest(&ca_der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    Ok(ServerTls { files, ca: ca_path, fingerprint, new_ca, issued: !reuse })
}

/// The CA's parameters, a function of its key alone (see the module doc).
fn ca_params(key: &KeyPair) -> CertificateParams {
    let digest = Sha256::digest(key.subject_public_key_info());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("fleetwall control plane CA {id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Whether the server certificate in `files` is the one to keep: its key, issued by the CA
/// named `ca_subject`, valid now and for a while yet, for exactly `names`.
fn fits(files: &fleetwall_server::web::TlsFiles, ca_subject: &[u8], names: &BTreeSet<San>, now: i64) -> Result<bool> {
    let key = read_key(&files.key)?;
    let der = read_cert(&files.cert)?;
    let cert = parse(&der, &files.cert)?;
    let tbs = &cert.tbs_certificate;
    let validity = &tbs.validity;
    let secs = |t: x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    let current = secs(validity.not_before) <= now && secs(validity.not_after) > now + RENEW_DAYS * DAY;
    let sans: BTreeSet<San> = match tbs.get::<SubjectAltName>()? {
        Some((_, SubjectAltName(general))) => general
            .iter()
            .filter_map(|name| match name {
                GeneralName::DnsName(dns) => Some(San::Dns(dns.as_str().to_ascii_lowercase())),
                GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                    4 => <[u8; 4]>::try_from(ip.as_bytes()).ok().map(|b| San::Ip(IpAddr::from(b))),
                    16 => <[u8; 16]>::try_from(ip.as_bytes()).ok().map(|b| San::Ip(IpAddr::from(b).to_canonical())),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        None => BTreeSet::new(),
    };
    Ok(spki(&cert)? == key.subject_public_key_info() && tbs.issuer.to_der()? == ca_subject && current && &sans == names)
}

fn read_key(path: &Path) -> Result<KeyPair> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    KeyPair::from_pem(&pem).with_context(|| format!("cannot read the private key in {}", path.display()))
}

fn read_cert(path: &Path) -> Result<Vec<u8>> {
    let der = CertificateDer::from_pem_file(path)
        .with_context(|| format!("cannot read a PEM certificate from {}", path.display()))?;
    Ok(der.to_vec())
}

fn parse(der: &[u8], path: &Path) -> Result<x509_cert::Certificate> {
    x509_cert::Certificate::from_der(der).with_context(|| format!("cannot parse the certificate in {}", path.display()))
}

fn spki(cert: &x509_cert::Certificate) -> Result<Vec<u8>> {
    Ok(cert.tbs_certificate.subject_public_key_info.to_der()?)
}

fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

fn at(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_127_8_and_1_and_localhost_only() {
        for listen in ["127.0.0.1:8181", "127.9.9.9:1", "[::1]:8181", "localhost:8181", "LOCALHOST:1"] {
            assert!(is_loopback(listen), "{listen}");
        }
        for listen in ["0.0.0.0:8181", "[::]:8181", "10.0.0.5:8181", "cp.example.net:8181", "[::ffff:10.0.0.1]:1"] {
            assert!(!is_loopback(listen), "{listen}");
        }
        assert!(is_loopback("[::ffff:127.0.0.1]:1"));
    }

    #[test]
    fn a_wildcard_listen_names_loopback_and_the_host_and_extras_are_added() {
        let names = names_for("0.0.0.0:8181", &["cp.example.net".into(), "[2001:db8::1]".into()]).unwrap();
        for name in ["localhost", "127.0.0.1", "::1", "cp.example.net", "2001:db8::1"] {
            assert!(names.contains(&San::parse(name)), "{name} in {names:?}");
        }
        if let Some(host) = hostname() {
            assert!(names.contains(&San::Dns(host)));
        }
        let one = names_for("10.0.0.5:8181", &[]).unwrap();
        assert_eq!(one.into_iter().collect::<Vec<_>>(), vec![San::Ip("10.0.0.5".parse().unwrap())]);
        assert_eq!(names_for("CP.Example.net:1", &[]).unwrap().first(), Some(&San::Dns("cp.example.net".into())));
        let bad = names_for("10.0.0.5:8181", &["bad name!".into()]).unwrap_err();
        assert_eq!(bad.to_string(), "--tls-san bad name!: neither an IP address nor a DNS name");
    }

    #[test]
    fn the_ca_is_kept_and_the_server_certificate_follows_its_names() {
        let dir = std::env::temp_dir().join(format!("fw-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names: BTreeSet<San> = ["127.0.0.1", "localhost"].into_iter().map(San::parse).collect();
        let first = ensure(&dir, &names).unwrap();
        assert!(first.new_ca && first.issued);
        let server = std::fs::read(&first.files.cert).unwrap();
        let again = ensure(&dir, &names).unwrap();
        assert!(!again.new_ca && !again.issued, "both are reused");
        assert_eq!((again.fingerprint, std::fs::read(&again.files.cert).unwrap()), (first.fingerprint.clone(), server));
        let more: BTreeSet<San> = names.iter().cloned().chain([San::parse("cp.example.net")]).collect();
        let changed = ensure(&dir, &more).unwrap();
        assert!(!changed.new_ca && changed.issued, "new names, new server certificate, same CA");
        assert_eq!(changed.fingerprint, first.fingerprint);
        let fewer = ensure(&dir, &names).unwrap();
        assert!(fewer.issued, "a name dropped is a change too");
        std::fs::remove_file(dir.join("ca-key.pem")).unwrap();
        assert!(ensure(&dir, &names).unwrap_err().to_string().contains("without its key"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
