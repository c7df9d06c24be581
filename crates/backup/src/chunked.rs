//! The fleetwall format (layout in the crate docs): a header with the RSA-OAEP-wrapped file
//! keys and its own tag, then 1 MiB chunks each followed by a tag over the header tag, the
//! chunk index, the final flag and the chunk's ciphertext.
//!
//! Decryption verifies a chunk's tag before it decrypts or writes a byte of it, so memory
//! stays at one chunk and nothing unauthenticated is ever released. One CTR keystream runs
//! over the whole file, so the body is plain AES-256-CTR and checkable against openssl.

use crate::keys::{PrivateKey, PublicKey};
use crate::keystream::{Aes, Keystream};
use crate::stream::{self, read_exact, read_full, PageBuf};
use crate::{Error, ErrorKind, Format, Inspection, Summary};
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use zeroize::Zeroizing;

pub(crate) const MAGIC: &[u8] = b"FWBK";
const VERSION: u8 = 1;
/// The chunk size written: 1 MiB, large enough that per-chunk tags cost nothing.
pub(crate) const CHUNK_LOG2: u8 = 20;
/// Chunk sizes a reader accepts; the upper bound is what bounds a reader's memory.
const CHUNK_LOG2_RANGE: std::ops::RangeInclusive<u8> = 10..=24;
const TAG: usize = 32;
/// magic, version, chunk_log2, wrapped-key length.
const FIXED: usize = 8;
const AES_KEY: usize = 32;
const IV: usize = 16;
const MAC_KEY: usize = 64;
const KEY_BLOCK: usize = AES_KEY + IV + MAC_KEY;

pub(crate) type HmacSha256 = hmac::Hmac<Sha256>;

/// A file's keys as the RSA key wraps them: aes_key || iv || hmac_key.
struct FileKeys(Zeroizing<[u8; KEY_BLOCK]>);

impl FileKeys {
    fn random() -> Result<FileKeys, Error> {
        let mut block = Zeroizing::new([0; KEY_BLOCK]);
        getrandom::fill(&mut block[..])
            .map_err(|e| Error::new(ErrorKind::Random, format!("the system's random number generator failed: {e}")))?;
        Ok(FileKeys(block))
    }

    fn cipher(&self) -> Keystream {
        let iv = self.0[AES_KEY..AES_KEY + IV].try_into().expect("a fixed iv size");
        Keystream::new(Aes::Aes256, &self.0[..AES_KEY], iv)
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.0[AES_KEY + IV..]).expect("HMAC takes any key size")
    }
}

fn chunk_tag(mac: &HmacSha256, header_tag: &[u8], index: u64, last: bool, ciphertext: &[u8]) -> HmacSha256 {
    let mut m = mac.clone();
    m.update(header_tag);
    m.update(&index.to_be_bytes());
    m.update(&[u8::from(last)]);
    m.update(ciphertext);
    m
}

/// Encrypts `input` with chunks of `2^chunk_log2` bytes.
pub(crate) fn encrypt(
    key: &PublicKey,
    chunk_log2: u8,
    mut input: impl Read,
    mut output: impl Write,
) -> Result<Summary, Error> {
    let keys = FileKeys::random()?;
    let wrapped = key
        .0
        .oaep_encrypt::<Sha256>(&keys.0[..])
        .map_err(|e| Error::new(ErrorKind::Random, format!("cannot wrap the file key: {e}")))?;
    let mut header = Vec::with_capacity(FIXED + wrapped.len() + TAG);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&[VERSION, chunk_log2]);
    header.extend_from_slice(&u16::try_from(wrapped.len()).expect("RSA keys are at most 8192 bits").to_be_bytes());
    header.extend_from_slice(&wrapped);
    let mac = keys.mac();
    let header_tag = mac.clone().chain_update(&header).finalize().into_bytes();
    header.extend_from_slice(&header_tag);
    stream::write_all(&mut output, &header)?;

    let size = 1usize << chunk_log2;
    let mut summary = Summary { format: Format::Fleetwall, plaintext_bytes: 0, file_bytes: header.len() as u64 };
    let cipher = keys.cipher();
    let (plain, file) = on_every_core(&mut input, &mut output, size, TAG, |index, buf, n, last| {
        cipher.apply_at(index * size as u64, &mut buf[..n]);
        let tag = chunk_tag(&mac, &header_tag, index, last, &buf[..n]).finalize().into_bytes();
        buf[n..n + TAG].copy_from_slice(&tag);
        Ok(n + TAG)
    })?;
    summary.plaintext_bytes += plain;
    summary.file_bytes += file;
    stream::flush(&mut output)?;
    Ok(summary)
}

/// Reads `input` in chunks of `chunk` bytes (the last one shorter, possibly empty) and
/// runs `work(index, buf, len, last)` on each, on every core, writing the first bytes of
/// each buffer that `work` says (or stopping at its first error) in chunk order: nothing
/// of a chunk after a failed one is ever written. `spare` is room `work` may use past the
/// chunk (for a tag). Returns the bytes read and written. At most `2 × cores` chunks are
/// in memory.
fn on_every_core(
    input: &mut impl Read,
    output: &mut impl Write,
    chunk: usize,
    spare: usize,
    work: impl Fn(u64, &mut [u8], usize, bool) -> Result<usize, Error> + Sync,
) -> Result<(u64, u64), Error> {
    type Done = (u64, PageBuf, usize, Result<usize, Error>);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let (to_work, jobs) = std::sync::mpsc::sync_channel::<(u64, PageBuf, usize, bool)>(workers);
    let (finished, done) = std::sync::mpsc::sync_channel::<Done>(workers);
    let jobs = std::sync::Mutex::new(jobs);
    let (jobs, work) = (&jobs, &work);
    // The senders move into the scope's closure, so an early return drops them there and
    // the workers, seeing their channels closed, end before the scope joins them.
    std::thread::scope(move |scope| {
        for _ in 0..workers {
            let finished = finished.clone();
            scope.spawn(move || loop {
                let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((index, mut buf, n, last)) = job else { break };
                let result = work(index, &mut buf, n, last);
                if finished.send((index, buf, n, result)).is_err() {
                    break;
                }
            });
        }
        drop(finished);
        let mut ready = std::collections::BTreeMap::new();
        let mut free: Vec<PageBuf> = Vec::new();
        let (mut sent, mut written, mut ended) = (0u64, 0u64, false);
        let (mut read_bytes, mut written_bytes) = (0u64, 0u64);
        while !ended || written < sent {
            // Keep every worker busy: read ahead while fewer than 2 × workers are out.
            if !ended && sent - written < 2 * workers as u64 {
                let mut buf = free.pop().unwrap_or_else(|| PageBuf::new(chunk + spare));
                let n = read_full(&mut *input, &mut buf[..chunk])?;
                ended = n < chunk;
                read_bytes += n as u64;
                to_work.send((sent, buf, n, ended)).expect("the workers run until their jobs end");
                sent += 1;
                continue;
            }
            let (index, buf, n, result) = done.recv().expect("a worker answers every chunk it is sent");
            ready.insert(index, (buf, n, result));
            while let Some((buf, _, result)) = ready.remove(&written) {
                let out = result?;
                stream::write_all(&mut *output, &buf[..out])?;
                written_bytes += out as u64;
                free.push(buf);
                written += 1;
            }
        }
        Ok((read_bytes, written_bytes))
    })
}

/// The parsed fixed part of a header.
struct Fixed {
    chunk_log2: u8,
    wrapped_len: usize,
}

fn read_fixed(mut input: impl Read) -> Result<(Fixed, [u8; FIXED]), Error> {
    let mut fixed = [0; FIXED];
    read_exact(&mut input, &mut fixed, "the header")?;
    debug_assert_eq!(&fixed[..4], MAGIC, "detect checked the magic");
    if fixed[4] != VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "fleetwall backup format version {} is not supported (this build reads version {VERSION})",
                fixed[4]
            ),
        ));
    }
    let chunk_log2 = fixed[5];
    if !CHUNK_LOG2_RANGE.contains(&chunk_log2) {
        return Err(Error::new(
            ErrorKind::Malformed,
            format!(
                "the header's chunk size 2^{chunk_log2} is outside 2^{}..=2^{}",
                CHUNK_LOG2_RANGE.start(),
                CHUNK_LOG2_RANGE.end()
            ),
        ));
    }
    let wrapped_len = usize::from(u16::from_be_bytes([fixed[6], fixed[7]]));
    if wrapped_len == 0 {
        return Err(Error::new(ErrorKind::Malformed, "the header's wrapped key is empty"));
    }
    Ok((Fixed { chunk_log2, wrapped_len }, fixed))
}

/// Decrypts a fleetwall file, releasing each chunk only once its tag verified.
pub(crate) fn decrypt(key: &PrivateKey, mut input: impl Read, mut output: impl Write) -> Result<Summary, Error> {
    let (fixed, fixed_bytes) = read_fixed(&mut input)?;
    if fixed.wrapped_len != key.size() {
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!(
                "wrong key: the file key is wrapped for a {}-bit RSA key, this private key has {} bits",
                fixed.wrapped_len * 8,
                key.bits()
            ),
        ));
    }
    let mut rest = vec![0; fixed.wrapped_len + TAG];
    read_exact(&mut input, &mut rest, "the header")?;
    let (wrapped, header_tag) = rest.split_at(fixed.wrapped_len);
    let block = Zeroizing::new(key.0.oaep_decrypt::<Sha256>(wrapped).map_err(|_| {
        Error::new(
            ErrorKind::WrongKey,
            "wrong key: the file key does not unwrap with this private key (or the header's wrapped key was altered)",
        )
    })?);
    let keys = FileKeys(Zeroizing::new(block.as_slice().try_into().map_err(|_| {
        Error::new(ErrorKind::Tampered, format!("the unwrapped key block has {} bytes, not {KEY_BLOCK}", block.len()))
    })?));
    let mac = keys.mac();
    mac.clone()
        .chain_update(fixed_bytes)
        .chain_update(wrapped)
        .verify_slice(header_tag)
        .map_err(|_| Error::new(ErrorKind::Tampered, "integrity check failed: the header was altered"))?;

    let size = 1usize << fixed.chunk_log2;
    let mut summary =
        Summary { format: Format::Fleetwall, plaintext_bytes: 0, file_bytes: (FIXED + fixed.wrapped_len + TAG) as u64 };
    let cipher = keys.cipher();
    // A full read means more follows: the last chunk is always shorter than a full one.
    let (file, plain) = on_every_core(&mut input, &mut output, size + TAG, 0, |index, buf, got, last| {
        if got < TAG {
            return Err(Error::new(
                ErrorKind::Truncated,
                format!("the file is truncated: chunk {index} is missing or cut short (no last chunk was found)"),
            ));
        }
        let n = got - TAG;
        chunk_tag(&mac, header_tag, index, last, &buf[..n]).verify_slice(&buf[n..got]).map_err(|_| {
            Error::new(
                ErrorKind::Tampered,
                format!("integrity check failed at chunk {index}: the file was altered, truncated or reordered"),
            )
        })?;
        cipher.apply_at(index * size as u64, &mut buf[..n]);
        Ok(n)
    })?;
    summary.plaintext_bytes += plain;
    summary.file_bytes += file;
    stream::flush(&mut output)?;
    Ok(summary)
}

/// Reads the header and counts the chunks; needs no key.
pub(crate) fn inspect(mut input: impl Read) -> Result<Inspection, Error> {
    let (fixed, _) = read_fixed(&mut input)?;
    let mut rest = vec![0; fixed.wrapped_len + TAG];
    read_exact(&mut input, &mut rest, "the header")?;
    let header_bytes = (FIXED + fixed.wrapped_len + TAG) as u64;
    let body = stream::drain(&mut input)?;
    let size = 1u64 << fixed.chunk_log2;
    let (full, last) = (body / (size + TAG as u64), body % (size + TAG as u64));
    if last < TAG as u64 {
        return Err(Error::new(ErrorKind::Truncated, "the file is truncated: its last chunk is missing or cut short"));
    }
    Ok(Inspection {
        format: Format::Fleetwall,
        version: Some(VERSION),
        rsa_bits: fixed.wrapped_len * 8,
        header_bytes,
        chunk_bytes: Some(size),
        tag_bytes: TAG as u64 * (full + 2),
        plaintext_bytes: full * size + last - TAG as u64,
        file_bytes: header_bytes + body,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt) through the file-key layout.
    #[test]
    fn aes_256_ctr_known_answer() {
        let mut block = [0; KEY_BLOCK];
        block[..AES_KEY].copy_from_slice(&hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"));
        block[AES_KEY..AES_KEY + IV].copy_from_slice(&hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
        let mut data = hex("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710");
        FileKeys(Zeroizing::new(block)).cipher().apply_at(0, &mut data);
        assert_eq!(
            data,
            hex("601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5
                 2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6")
        );
    }

    /// RFC 4231 test cases 2 and 6 (a key longer than the block, like none of ours, and a
    /// short one) through the same HMAC type the chunk tags use.
    #[test]
    fn hmac_sha256_known_answers() {
        let tag = |key: &[u8], msg: &[u8]| {
            <HmacSha256 as KeyInit>::new_from_slice(key).unwrap().chain_update(msg).finalize().into_bytes().to_vec()
        };
        assert_eq!(
            tag(b"Jefe", b"what do ya want for nothing?"),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            tag(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }

    /// The chunk tag is HMAC over header_tag || u64 index || final flag || ciphertext.
    #[test]
    fn the_chunk_tag_covers_index_flag_and_ciphertext_in_that_order() {
        let mac = <HmacSha256 as KeyInit>::new_from_slice(&[7; MAC_KEY]).unwrap();
        let by_hand = mac.clone().chain_update([1; TAG]).chain_update([0, 0, 0, 0, 0, 0, 0, 5, 1]).chain_update(b"ct");
        assert_eq!(chunk_tag(&mac, &[1; TAG], 5, true, b"ct").finalize(), by_hand.finalize());
        assert_ne!(
            chunk_tag(&mac, &[1; TAG], 5, true, b"ct").finalize(),
            chunk_tag(&mac, &[1; TAG], 5, false, b"ct").finalize()
        );
    }
}
