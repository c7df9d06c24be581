//! rohmu's `pghoa1` format, as pghoard writes it (layout and parameters in the crate docs):
//! AES-128-CTR, HMAC-SHA256 with a 256-bit key over the ciphertext, one tag at the end, the
//! keys wrapped with RSA-OAEP-SHA-1.
//!
//! Because the only tag comes last, an authenticated decrypt reads the file twice: once to
//! check the tag, once to decrypt. A stream can only be decrypted unauthenticated, holding
//! back the last 32 bytes as the tag and reporting a mismatch after the plaintext is out.

use crate::chunked::HmacSha256;
use crate::keys::{PrivateKey, PublicKey};
use crate::stream::{self, read_error, read_exact, read_full, PageBuf};
use crate::{Error, ErrorKind, Format, Inspection, Summary};
use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{KeyInit, Mac};
use sha1::Sha1;
use std::io::{Read, Seek, SeekFrom, Write};
use zeroize::Zeroizing;

pub(crate) const MAGIC: &[u8] = b"pghoa1";
const TAG: usize = 32;
const AES_KEY: usize = 16;
const IV: usize = 16;
const MAC_KEY: usize = 32;
const KEY_BLOCK: usize = AES_KEY + IV + MAC_KEY;
/// rohmu reads and writes in 1 MiB blocks too; any size works, this one amortises calls.
const BLOCK: usize = 1 << 20;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

struct FileKeys(Zeroizing<[u8; KEY_BLOCK]>);

impl FileKeys {
    fn cipher(&self) -> Aes128Ctr {
        Aes128Ctr::new_from_slices(&self.0[..AES_KEY], &self.0[AES_KEY..AES_KEY + IV]).expect("fixed key and iv sizes")
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.0[AES_KEY + IV..]).expect("HMAC takes any key size")
    }
}

/// Encrypts like rohmu's `Encryptor`, except that an empty input still gets a header and a
/// tag (rohmu writes nothing at all), so that it stays authenticated; rohmu reads it as empty.
pub(crate) fn encrypt(key: &PublicKey, mut input: impl Read, mut output: impl Write) -> Result<Summary, Error> {
    let mut block = Zeroizing::new([0; KEY_BLOCK]);
    getrandom::fill(&mut block[..])
        .map_err(|e| Error::new(ErrorKind::Random, format!("the system's random number generator failed: {e}")))?;
    let keys = FileKeys(block);
    let wrapped = key
        .0
        .oaep_encrypt::<Sha1>(&keys.0[..])
        .map_err(|e| Error::new(ErrorKind::Random, format!("cannot wrap the file key: {e}")))?;
    let mut header = Vec::with_capacity(MAGIC.len() + 2 + wrapped.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&u16::try_from(wrapped.len()).expect("RSA keys are at most 8192 bits").to_be_bytes());
    header.extend_from_slice(&wrapped);
    stream::write_all(&mut output, &header)?;

    let (mut cipher, mut mac) = (keys.cipher(), keys.mac());
    let mut buf = PageBuf::new(BLOCK);
    let mut summary = Summary { format: Format::Pghoard, plaintext_bytes: 0, file_bytes: header.len() as u64 };
    loop {
        let n = read_full(&mut input, &mut buf)?;
        cipher.apply_keystream(&mut buf[..n]);
        mac.update(&buf[..n]);
        stream::write_all(&mut output, &buf[..n])?;
        summary.plaintext_bytes += n as u64;
        summary.file_bytes += n as u64;
        if n < BLOCK {
            break;
        }
    }
    stream::write_all(&mut output, &mac.finalize().into_bytes())?;
    stream::flush(&mut output)?;
    summary.file_bytes += TAG as u64;
    Ok(summary)
}

/// Reads magic, key length and wrapped key; returns the wrapped key.
fn read_header(mut input: impl Read) -> Result<Vec<u8>, Error> {
    let mut fixed = [0; 8];
    read_exact(&mut input, &mut fixed, "the header")?;
    debug_assert_eq!(&fixed[..6], MAGIC, "detect checked the magic");
    let n = usize::from(u16::from_be_bytes([fixed[6], fixed[7]]));
    if n == 0 {
        return Err(Error::new(ErrorKind::Malformed, "the header's wrapped key is empty"));
    }
    let mut wrapped = vec![0; n];
    read_exact(&mut input, &mut wrapped, "the header")?;
    Ok(wrapped)
}

fn unwrap(key: &PrivateKey, wrapped: &[u8]) -> Result<FileKeys, Error> {
    if wrapped.len() != key.size() {
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!(
                "wrong key: the file key is wrapped for a {}-bit RSA key, this private key has {} bits",
                wrapped.len() * 8,
                key.bits()
            ),
        ));
    }
    let block = Zeroizing::new(key.0.oaep_decrypt::<Sha1>(wrapped).map_err(|_| {
        Error::new(
            ErrorKind::WrongKey,
            "wrong key: the file key does not unwrap with this private key (or the header's wrapped key was altered)",
        )
    })?);
    let block: [u8; KEY_BLOCK] = block.as_slice().try_into().map_err(|_| {
        Error::new(ErrorKind::Tampered, format!("the unwrapped key block has {} bytes, not {KEY_BLOCK}", block.len()))
    })?;
    Ok(FileKeys(Zeroizing::new(block)))
}

fn tampered() -> Error {
    Error::new(ErrorKind::Tampered, "integrity check failed: the file was altered or truncated")
}

/// Two passes over a seekable input: verify the tag, then decrypt. Only authenticated
/// plaintext is written; the input must not change in between.
pub(crate) fn decrypt_verified<R: Read + Seek>(
    key: &PrivateKey,
    mut input: R,
    mut output: impl Write,
) -> Result<Summary, Error> {
    let start = input.stream_position().map_err(read_error)?;
    let wrapped = read_header(&mut input)?;
    let keys = unwrap(key, &wrapped)?;
    let body_start = input.stream_position().map_err(read_error)?;
    let end = input.seek(SeekFrom::End(0)).map_err(read_error)?;
    let body = end
        .checked_sub(body_start + TAG as u64)
        .ok_or_else(|| Error::new(ErrorKind::Truncated, "the file is truncated: it ends before its 32-byte tag"))?;
    let mut buf = PageBuf::new(BLOCK);

    input.seek(SeekFrom::Start(body_start)).map_err(read_error)?;
    let mut mac = keys.mac();
    each_block(&mut input, body, &mut buf, |data| {
        mac.update(data);
        Ok(())
    })?;
    let mut tag = [0; TAG];
    read_exact(&mut input, &mut tag, "the tag")?;
    mac.verify_slice(&tag).map_err(|_| tampered())?;

    input.seek(SeekFrom::Start(body_start)).map_err(read_error)?;
    let mut cipher = keys.cipher();
    each_block(&mut input, body, &mut buf, |data| {
        cipher.apply_keystream(data);
        stream::write_all(&mut output, data)
    })?;
    stream::flush(&mut output)?;
    Ok(Summary { format: Format::Pghoard, plaintext_bytes: body, file_bytes: end - start })
}

/// Feeds exactly `len` bytes of `input` to `f`, a block at a time.
fn each_block(
    mut input: impl Read,
    len: u64,
    buf: &mut [u8],
    mut f: impl FnMut(&mut [u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        read_exact(&mut input, &mut buf[..n], "the ciphertext")?;
        f(&mut buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// One pass over a stream: plaintext is written as it is decrypted, the last 32 bytes are
/// held back as the tag, and a mismatch is reported after everything was written.
pub(crate) fn decrypt_unverified(
    key: &PrivateKey,
    mut input: impl Read,
    mut output: impl Write,
) -> Result<Summary, Error> {
    let wrapped = read_header(&mut input)?;
    let keys = unwrap(key, &wrapped)?;
    let (mut cipher, mut mac) = (keys.cipher(), keys.mac());
    let mut buf = PageBuf::new(BLOCK + TAG);
    let mut held = 0;
    let mut body = 0u64;
    loop {
        let got = read_full(&mut input, &mut buf[held..])?;
        let total = held + got;
        let at_end = total < buf.len();
        if at_end && total < TAG {
            return Err(Error::new(ErrorKind::Truncated, "the file is truncated: it ends before its 32-byte tag"));
        }
        let data = total - TAG;
        mac.update(&buf[..data]);
        cipher.apply_keystream(&mut buf[..data]);
        stream::write_all(&mut output, &buf[..data])?;
        body += data as u64;
        if at_end {
            stream::flush(&mut output)?;
            mac.verify_slice(&buf[data..total]).map_err(|_| tampered())?;
            break;
        }
        buf.copy_within(data..total, 0);
        held = TAG;
    }
    Ok(Summary { format: Format::Pghoard, plaintext_bytes: body, file_bytes: (8 + wrapped.len() + TAG) as u64 + body })
}

/// Reads the header and the length of the rest; needs no key.
pub(crate) fn inspect(mut input: impl Read) -> Result<Inspection, Error> {
    let wrapped = read_header(&mut input)?;
    let header_bytes = (8 + wrapped.len()) as u64;
    let rest = stream::drain(&mut input)?;
    let plaintext_bytes = rest
        .checked_sub(TAG as u64)
        .ok_or_else(|| Error::new(ErrorKind::Truncated, "the file is truncated: it ends before its 32-byte tag"))?;
    Ok(Inspection {
        format: Format::Pghoard,
        version: None,
        rsa_bits: wrapped.len() * 8,
        header_bytes,
        chunk_bytes: None,
        tag_bytes: TAG as u64,
        plaintext_bytes,
        file_bytes: header_bytes + rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::tests::hex;

    /// NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt) through rohmu's key layout.
    #[test]
    fn aes_128_ctr_known_answer() {
        let mut block = [0; KEY_BLOCK];
        block[..AES_KEY].copy_from_slice(&hex("2b7e151628aed2a6abf7158809cf4f3c"));
        block[AES_KEY..AES_KEY + IV].copy_from_slice(&hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
        let mut data = hex("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710");
        FileKeys(Zeroizing::new(block)).cipher().apply_keystream(&mut data);
        assert_eq!(
            data,
            hex("874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
                 5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee")
        );
    }
}
