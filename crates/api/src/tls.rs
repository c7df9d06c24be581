//! rustls configuration from PEM files, always with the ring provider: the HTTP client
//! ([`crate::http::Client`]), the server's certificate ([`load_certs`], [`load_key`]), and TLS
//! clients elsewhere (the PostgreSQL store) through [`client_tls_config`].

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::http::Error;

/// The ring crypto provider, the one the workspace uses everywhere.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; an error naming the file if there is none.
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::Tls(format!("cannot read {what} {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&e))?;
    if certs.is_empty() {
        return Err(fail(&"no PEM certificate (BEGIN CERTIFICATE) in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let e = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in the file".to_string(),
            e => e.to_string(),
        };
        Error::Tls(format!("cannot read private key {}: {e}", path.display()))
    })
}

/// How a TLS client decides whether to trust a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTrust<'a> {
    /// A certificate that chains to a CA in the file (or is itself in the file) and names the
    /// server.
    CaFile(&'a Path),
    /// Like `CaFile`, whatever names the certificate carries (PostgreSQL's `verify-ca`).
    CaFileAnyName(&'a Path),
    /// Any certificate: the connection is encrypted but the server is not authenticated, so it
    /// keeps out eavesdroppers, not impostors (PostgreSQL's `require` and `prefer`).
    Unauthenticated,
}

/// A client configuration with the ring provider, trusting servers as `trust` says and
/// offering the application protocol `alpn`.
pub fn client_tls_config(trust: ServerTrust<'_>, alpn: &[u8]) -> Result<ClientConfig, Error> {
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        ServerTrust::CaFile(ca) => Arc::new(Verifier::new(ca, true)?),
        ServerTrust::CaFileAnyName(ca) => Arc::new(Verifier::new(ca, false)?),
        ServerTrust::Unauthenticated => {
            Arc::new(AnyCertificate { algorithms: provider().signature_verification_algorithms })
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The standard WebPKI verification against the CA file, plus one case it refuses: a server
/// certificate that is itself, byte for byte, in the CA file (a self-signed certificate used as
/// its own trust anchor, as `openssl req -x509` makes them: these are marked as CA certificates,
/// which WebPKI does not accept as a server's own). Such a pinned certificate is accepted when
/// it is valid now and names the server.
/// With `check_name` off, a certificate for other names is accepted too.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl Verifier {
    /// A verifier trusting exactly the certificates in `ca`.
    fn new(ca: &Path, check_name: bool) -> Result<Verifier, Error> {
        let pinned = load_certs(ca, "CA certificates")?;
        let mut roots = RootCertStore::empty();
        for cert in &pinned {
            roots.add(cert.clone()).map_err(|e| {
                Error::Tls(format!("cannot use a certificate in {} as a trust anchor: {e}", ca.display()))
            })?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| Error::Tls(format!("cannot use the certificates in {}: {e}", ca.display())))?;
        Ok(Verifier { webpki, pinned, check_name })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            // WebPKI checks the name last, after the chain and its validity.
            return match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) if !self.check_name => Ok(ServerCertVerified::assertion()),
                verified => verified,
            };
        }
        let (not_before, not_after) =
            validity(end_entity).ok_or(rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let time = now.as_secs();
        if time < not_before {
            let not_before = UnixTime::since_unix_epoch(Duration::from_secs(not_before));
            return Err(CertificateError::NotValidYetContext { time: now, not_before }.into());
        }
        if time > not_after {
            let not_after = UnixTime::since_unix_epoch(Duration::from_secs(not_after));
            return Err(CertificateError::ExpiredContext { time: now, not_after }.into());
        }
        if self.check_name {
            verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Accepts any certificate, but still checks that the server holds its key (the handshake
/// signatures), so the session keys are shared with whoever presented it and no one else.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// One DER element: (tag, contents, what follows).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(n)?;
        rest = after;
        bytes.iter().fold(0usize, |len, &b| len << 8 | usize::from(b))
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The validity period (not before, not after) of a DER certificate, in seconds since 1970.
fn validity(der: &[u8]) -> Option<(u64, u64)> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, certificate, _) = der_element(der)? else { return None };
    let (SEQUENCE, tbs, _) = der_element(certificate)? else { return None };
    let mut rest = tbs;
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        // [0] version
        rest = after;
    }
    // serialNumber INTEGER, signature AlgorithmIdentifier, issuer Name, validity
    for expected in [0x02, SEQUENCE, SEQUENCE] {
        let (tag, _, after) = der_element(rest)?;
        if tag != expected {
            return None;
        }
        rest = after;
    }
    let (SEQUENCE, validity, _) = der_element(rest)? else { return None };
    let (tag, not_before, rest) = der_element(validity)?;
    let not_before = der_time(tag, not_before)?;
    let (tag, not_after, _) = der_element(rest)?;
    Some((not_before, der_time(tag, not_after)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) in seconds since 1970.
fn der_time(tag: u8, contents: &[u8]) -> Option<u64> {
    let digits = contents.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |d: &[u8]| d.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = number(&digits[..2]);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (number(&digits[..4]), &digits[4..]),
        _ => return None,
    };
    let [month, day, hour, minute, second] = [0, 2, 4, 6, 8].map(|i| number(&rest[i..i + 2]));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970
    {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (March-based years).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_times() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"000229123456Z"), Some(951_827_696));
        assert_eq!(der_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(der_time(0x18, b"21000301000000Z"), Some(4_107_542_400));
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(der_time(0x17, b"700101000000"), None);
        assert_eq!(der_time(0x17, b"7001010000000Z"), None);
        assert_eq!(der_time(0x17, b"701301000000Z"), None);
        assert_eq!(der_time(0x18, b"2000010100000\xc3Z"), None);
        assert_eq!(der_time(0x04, b"700101000000Z"), None);
    }

    #[test]
    fn der_elements() {
        assert_eq!(der_element(&[0x30, 0x02, 1, 2, 9]), Some((0x30, &[1u8, 2][..], &[9u8][..])));
        let long = [&[0x04u8, 0x81, 0x80][..], &[7; 0x80]].concat();
        assert_eq!(der_element(&long).map(|(t, c, r)| (t, c.len(), r.len())), Some((0x04, 0x80, 0)));
        assert_eq!(der_element(&[0x30, 0x03, 1]), None);
        assert_eq!(der_element(&[0x30, 0x80]), None);
        assert_eq!(validity(&[0x30, 0x00]), None);
    }
}
