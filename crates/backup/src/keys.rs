//! RSA key pairs: generate a per-service pair, load PEM keys, and refuse anything but RSA
//! of at least 3072 bits, so a weak or foreign key fails at load time with a clear message
//! instead of producing a file that is weaker than the seed promises.

use crate::{Error, ErrorKind};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::Generate;

/// The smallest RSA modulus accepted, in bits (the seed's key size).
pub const MIN_RSA_BITS: usize = 3072;

/// A key pair as PEM text, for the control plane to store per service.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The private key, PKCS#8 PEM ("PRIVATE KEY"), unencrypted: store it as a secret.
    pub private_pem: String,
    /// The public key, SubjectPublicKeyInfo PEM ("PUBLIC KEY").
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key, not even in a panic message.
        f.debug_struct("KeyPair").field("public_pem", &self.public_pem).finish_non_exhaustive()
    }
}

/// Generates a fresh RSA-3072 key pair (public exponent 65537) from the OS's randomness.
pub fn generate_keypair() -> Result<KeyPair, Error> {
    let key = rsa::PrivateKey::try_generate()
        .map_err(|e| Error::new(ErrorKind::Random, format!("cannot generate an RSA key: {e}")))?;
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::new(ErrorKind::Random, format!("cannot encode the private key: {e}")))?
        .to_string();
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::new(ErrorKind::Random, format!("cannot encode the public key: {e}")))?;
    Ok(KeyPair { private_pem, public_pem })
}

/// An RSA public key of at least [`MIN_RSA_BITS`] bits: what files are encrypted for.
#[derive(Debug, Clone)]
pub struct PublicKey(pub(crate) rsa::PublicKey);

/// An RSA private key of at least [`MIN_RSA_BITS`] bits: what files are decrypted with.
pub struct PrivateKey(pub(crate) rsa::PrivateKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({} bits)", self.bits())
    }
}

impl PublicKey {
    /// Loads an SPKI ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") PEM key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, Error> {
        if pem.contains("PRIVATE KEY-----") {
            return Err(Error::new(
                ErrorKind::KeyInvalid,
                "this is a private key: encrypt with the public key (backup.pub.pem)",
            ));
        }
        let key = rsa::PublicKey::from_public_key_pem(pem)
            .or_else(|spki| rsa::PublicKey::from_pkcs1_pem(pem).map_err(|_| spki))
            .map_err(|e| {
                Error::new(
                    ErrorKind::KeyInvalid,
                    format!("not an RSA public key in PEM (SPKI \"PUBLIC KEY\" or PKCS#1 \"RSA PUBLIC KEY\"): {e}"),
                )
            })?;
        check_bits(key.size() * 8)?;
        Ok(PublicKey(key))
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.0.size() * 8
    }
}

impl PrivateKey {
    /// Loads a PKCS#8 ("PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY") PEM key, unencrypted.
    pub fn from_pem(pem: &str) -> Result<PrivateKey, Error> {
        let key = rsa::PrivateKey::from_pkcs8_pem(pem)
            .or_else(|p8| rsa::PrivateKey::from_pkcs1_pem(pem).map_err(|_| p8))
            .map_err(|e| {
                Error::new(
                    ErrorKind::KeyInvalid,
                    format!(
                        "not an unencrypted RSA private key in PEM (PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\"): {e}"
                    ),
                )
            })?;
        check_bits(key.size() * 8)?;
        Ok(PrivateKey(key))
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.0.size() * 8
    }

    /// The modulus size in bytes: the length of every wrapped key for this key.
    pub(crate) fn size(&self) -> usize {
        self.0.size()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.to_public_key())
    }
}

fn check_bits(bits: usize) -> Result<(), Error> {
    if bits < MIN_RSA_BITS {
        return Err(Error::new(
            ErrorKind::KeyTooShort,
            format!("the RSA key has {bits} bits; backups need at least {MIN_RSA_BITS}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_loads_back_and_is_3072_bits() {
        let pair = generate_keypair().unwrap();
        assert!(pair.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let private = PrivateKey::from_pem(&pair.private_pem).unwrap();
        let public = PublicKey::from_pem(&pair.public_pem).unwrap();
        assert_eq!((private.bits(), public.bits()), (3072, 3072));
        assert_eq!(private.public_key().0, public.0);
        assert!(!format!("{pair:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_private_key_is_refused_where_a_public_one_belongs() {
        let pair = generate_keypair().unwrap();
        let e = PublicKey::from_pem(&pair.private_pem).unwrap_err();
        assert_eq!(e.kind, ErrorKind::KeyInvalid);
        assert_eq!(e.message, "this is a private key: encrypt with the public key (backup.pub.pem)");
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert_eq!(PublicKey::from_pem("hello").unwrap_err().kind, ErrorKind::KeyInvalid);
        assert_eq!(PrivateKey::from_pem("hello").unwrap_err().kind, ErrorKind::KeyInvalid);
    }

    #[test]
    fn short_keys_are_refused() {
        let e = check_bits(2048).unwrap_err();
        assert_eq!(e.kind, ErrorKind::KeyTooShort);
        assert_eq!(e.message, "the RSA key has 2048 bits; backups need at least 3072");
        assert!(check_bits(3072).is_ok());
        assert!(check_bits(4096).is_ok());
    }
}
