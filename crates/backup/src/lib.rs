//! Backup-file encryption (S11, seed 004): every file gets fresh random keys, the file is
//! encrypted with AES-256-CTR and authenticated with HMAC-SHA256 under a 512-bit key, and
//! the file keys are wrapped with the service's RSA-3072 public key (OAEP) in the header.
//!
//! The key decision is the *chunked* body: the ciphertext is cut into 1 MiB chunks, each
//! with its own HMAC tag bound to the header, its index and a final-chunk flag. A reader
//! therefore releases each chunk only once it is authenticated, with memory bounded by one
//! chunk, even from a pipe; reordering, dropping, duplicating or truncating chunks fails
//! the tag of the chunk where it happens, and cutting the file at a chunk boundary fails
//! because the last chunk read is not flagged final. rohmu's `pghoa1` format (read and
//! written for compatibility, see below) has a single tag at the very end instead, so it
//! cannot be both streamed and authenticated: [`decrypt`] reads such a file twice (tag
//! first, then plaintext) and [`decrypt_stream`] refuses it unless the caller asks for
//! [`Release::Unauthenticated`].
//!
//! AES-CTR is aws-lc's (`aws-lc-rs`; its AES-NI code runs at about 8 GB/s per core here,
//! twice the `aes` crate's, and the counter arithmetic around it is tested against
//! RustCrypto's `ctr::Ctr128BE` at every wrap); HMAC-SHA256, SHA-1 and RSA are RustCrypto
//! crates (`hmac`, `sha2` with SHA-NI autodetection, which is as fast as aws-lc's and
//! openssl's SHA-256, `sha1`, `rsa`); randomness comes from the operating system (`getrandom`).
//!
//! # The fleetwall format, version 1 (byte layout)
//!
//! All integers are big-endian. `HMAC(m)` is HMAC-SHA256 keyed with the file's 64-byte
//! HMAC key.
//!
//! ```text
//! offset   size  field
//! 0        4     magic "FWBK" (46 57 42 4b)
//! 4        1     version = 1
//! 5        1     chunk_log2: chunk size C = 2^chunk_log2 bytes; written as 20 (1 MiB),
//!                readers accept 10..=24 so a reader's memory stays under 16 MiB
//! 6        2     n = length of the wrapped key = the RSA modulus size in bytes (384)
//! 8        n     RSA-OAEP(SHA-256, MGF1-SHA-256, empty label) of the 112-byte key block:
//!                  aes_key[32] || iv[16] || hmac_key[64]
//! 8+n      32    header_tag = HMAC(bytes 0 .. 8+n)
//! 40+n     ...   chunks 0, 1, ..., k, each  ciphertext_i || tag_i  where
//!                  ciphertext_i = C bytes for every chunk but the last,
//!                                 0 ..= C-1 bytes for the last (a plaintext that is a
//!                                 multiple of C ends with an empty last chunk)
//!                  tag_i = HMAC(header_tag || u64(i) || u8(final) || ciphertext_i),
//!                          final = 1 for the last chunk, 0 otherwise
//! ```
//!
//! The ciphertexts, concatenated, are AES-256-CTR of the plaintext with `iv` as the initial
//! 128-bit big-endian counter block (what `openssl enc -aes-256-ctr -K aes_key -iv iv`
//! produces): chunks are multiples of 16 bytes, so the keystream simply runs on.
//! A reader knows the last chunk because it is shorter than `C + 32` bytes; it must then be
//! at end of file. The header tag covers magic, version, chunk size and the wrapped key, and
//! every chunk tag covers the header tag, so the tags together cover header and ciphertext.
//!
//! # rohmu's `pghoa1` format (what pghoard writes)
//!
//! Read from rohmu 2.8.2 `rohmu/encryptor.py` (`Encryptor`, `Decryptor`):
//!
//! ```text
//! offset   size  field
//! 0        6     magic "pghoa1"
//! 6        2     n = length of the wrapped key (u16, big-endian)
//! 8        n     RSA-OAEP(SHA-1, MGF1-SHA-1, no label) of aes_key[16] || iv[16] || hmac_key[32]
//! 8+n      L     AES-128-CTR(aes_key, initial counter block iv) of the plaintext
//! 8+n+L    32    HMAC-SHA256(hmac_key, ciphertext)   (the header is not covered)
//! ```
//!
//! Its parameters differ from the seed's: AES-**128** (a 128-bit key, not 256), a
//! **256**-bit HMAC key (not 512), OAEP with SHA-1, a tag over the ciphertext only (a
//! changed header changes the unwrapped keys and so fails all the same), one tag for the
//! whole file, and an empty plaintext written as an empty file with no header or tag. That
//! last one cannot be told from a truncated file, so an empty input is accepted only when
//! the caller names [`Format::Pghoard`]; fleetwall itself writes an empty plaintext in this
//! format as header + tag, which rohmu reads back as empty.

mod chunked;
mod keys;
mod keystream;
mod pghoard;
mod stream;

pub use keys::{generate_keypair, KeyPair, PrivateKey, PublicKey, MIN_RSA_BITS};

use std::fmt;
use std::io::{Read, Seek, Write};

/// What went wrong; callers match on the kind, the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key is not a PEM-encoded RSA key (PKCS#8, SPKI or PKCS#1), or is malformed.
    KeyInvalid,
    /// The RSA key is shorter than [`MIN_RSA_BITS`].
    KeyTooShort,
    /// The input starts with neither format's magic (or not with the one asked for).
    UnknownFormat,
    /// A fleetwall file of a version this build does not read.
    UnsupportedVersion,
    /// A header field is impossible (chunk size out of range, key length of zero).
    Malformed,
    /// The file keys do not unwrap: the file was encrypted for another key pair, or its
    /// wrapped key was altered (RSA-OAEP cannot tell the two apart).
    WrongKey,
    /// The input ends before the format says it may.
    Truncated,
    /// A tag does not match: the header or the ciphertext was altered, or (pghoard) the file
    /// was truncated.
    Tampered,
    /// A single-tag (pghoard) file was asked to stream without
    /// [`Release::Unauthenticated`]; nothing was written.
    NeedsUnauthenticatedRelease,
    /// Reading the input or writing the output failed.
    Io,
    /// The operating system's random number generator failed, or key generation did.
    Random,
}

/// A failed key load, encryption or decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What failed, for people.
    pub message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// This crate's chunked format (magic `FWBK`), the seed's parameters.
    Fleetwall,
    /// rohmu/pghoard's `pghoa1` format, rohmu's parameters.
    Pghoard,
}

impl Format {
    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Format::Fleetwall => "fleetwall",
            Format::Pghoard => "pghoard",
        }
    }
}

/// Whether [`decrypt_stream`] may write plaintext before it is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Only authenticated plaintext is written (a pghoard file is refused).
    Authenticated,
    /// A pghoard file streams as it is decrypted; a bad tag is reported at the end, after
    /// all of the plaintext was written. Fleetwall files stay authenticated chunk by chunk.
    Unauthenticated,
}

/// What an encryption or decryption did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The format of the file written or read.
    pub format: Format,
    /// Plaintext bytes read (encrypt) or written (decrypt).
    pub plaintext_bytes: u64,
    /// Encrypted-file bytes written (encrypt) or read (decrypt).
    pub file_bytes: u64,
}

/// What [`inspect`] finds in a file without any key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The file's format.
    pub format: Format,
    /// The fleetwall format version (pghoard files have none).
    pub version: Option<u8>,
    /// The RSA modulus size the file key is wrapped for, in bits.
    pub rsa_bits: usize,
    /// Bytes before the ciphertext.
    pub header_bytes: u64,
    /// The chunk size (fleetwall) in bytes.
    pub chunk_bytes: Option<u64>,
    /// Tag bytes in the file (one tag per chunk plus the header's, or pghoard's one).
    pub tag_bytes: u64,
    /// The plaintext size the layout implies.
    pub plaintext_bytes: u64,
    /// The whole file.
    pub file_bytes: u64,
}

/// Encrypts `input` to `output` in `format` for `key`, in bounded memory.
pub fn encrypt(format: Format, key: &PublicKey, input: impl Read, output: impl Write) -> Result<Summary, Error> {
    match format {
        Format::Fleetwall => chunked::encrypt(key, chunked::CHUNK_LOG2, input, output),
        Format::Pghoard => pghoard::encrypt(key, input, output),
    }
}

/// Decrypts a file of either format (or of `expect`, when given) and writes only
/// authenticated plaintext: a fleetwall file chunk by chunk, a pghoard file after a first
/// pass that checks its tag (the input must not change between the passes).
pub fn decrypt<R: Read + Seek>(
    key: &PrivateKey,
    expect: Option<Format>,
    mut input: R,
    output: impl Write,
) -> Result<Summary, Error> {
    let start = input.stream_position().map_err(stream::read_error)?;
    let detected = detect(&stream::Peeked::new(&mut input)?, expect)?;
    input.seek(std::io::SeekFrom::Start(start)).map_err(stream::read_error)?;
    match detected {
        Detected::Empty => Ok(Summary { format: Format::Pghoard, plaintext_bytes: 0, file_bytes: 0 }),
        Detected::Fleetwall => chunked::decrypt(key, input, output),
        Detected::Pghoard => pghoard::decrypt_verified(key, input, output),
    }
}

/// Decrypts from a stream (a pipe): fleetwall files chunk by chunk, authenticated; pghoard
/// files only with [`Release::Unauthenticated`], reporting a bad tag at the end.
pub fn decrypt_stream(
    key: &PrivateKey,
    expect: Option<Format>,
    release: Release,
    input: impl Read,
    output: impl Write,
) -> Result<Summary, Error> {
    let mut peeked = stream::Peeked::new(input)?;
    match detect(&peeked, expect)? {
        Detected::Empty => Ok(Summary { format: Format::Pghoard, plaintext_bytes: 0, file_bytes: 0 }),
        Detected::Fleetwall => chunked::decrypt(key, &mut peeked, output),
        Detected::Pghoard if release == Release::Unauthenticated => pghoard::decrypt_unverified(key, peeked, output),
        Detected::Pghoard => Err(Error::new(
            ErrorKind::NeedsUnauthenticatedRelease,
            "a pghoard file has one tag at its very end: decrypt it to a file, or ask for an unauthenticated stream",
        )),
    }
}

/// Reads the header (no key needed) and the rest of the input to its end, to report the
/// format, the RSA key size and the sizes the layout implies.
pub fn inspect(input: impl Read) -> Result<Inspection, Error> {
    let mut peeked = stream::Peeked::new(input)?;
    match detect(&peeked, None)? {
        Detected::Fleetwall => chunked::inspect(&mut peeked),
        Detected::Pghoard => pghoard::inspect(&mut peeked),
        Detected::Empty => unreachable!("detect refuses an empty input when no format is named"),
    }
}

enum Detected {
    Fleetwall,
    Pghoard,
    Empty,
}

fn detect<R: Read>(peeked: &stream::Peeked<R>, expect: Option<Format>) -> Result<Detected, Error> {
    let head = peeked.head();
    let found = if head.is_empty() {
        return match expect {
            Some(Format::Pghoard) => Ok(Detected::Empty),
            _ => Err(Error::new(
                ErrorKind::Truncated,
                "the input is empty: rohmu writes an empty backup as an empty file with no tag, which cannot be \
                 told from a truncated one; name the pghoard format to accept it",
            )),
        };
    } else if head.starts_with(chunked::MAGIC) {
        Format::Fleetwall
    } else if head.starts_with(pghoard::MAGIC) {
        Format::Pghoard
    } else if chunked::MAGIC.starts_with(head) || pghoard::MAGIC.starts_with(head) {
        return Err(Error::new(ErrorKind::Truncated, "the input ends inside its magic bytes"));
    } else {
        return Err(Error::new(
            ErrorKind::UnknownFormat,
            "not an encrypted backup: the input starts with neither \"FWBK\" (fleetwall) nor \"pghoa1\" (pghoard)",
        ));
    };
    match expect {
        Some(want) if want != found => Err(Error::new(
            ErrorKind::UnknownFormat,
            format!("expected a {} file, found a {} file", want.name(), found.name()),
        )),
        _ => Ok(match found {
            Format::Fleetwall => Detected::Fleetwall,
            Format::Pghoard => Detected::Pghoard,
        }),
    }
}
