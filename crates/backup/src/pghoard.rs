//! rohmu's `pghoa1` format, as pghoard writes it (layout and parameters in the crate docs):
//! AES-128-CTR, HMAC-SHA256 with a 256-bit key over the ciphertext, one tag at the end, the
//! keys wrapped with RSA-OAEP-SHA-1.
//!
//! Because the only tag comes last, an authenticated decrypt reads the file twice: once to
//! check the tag, once to decrypt. A stream can only be decrypted unauthenticated, holding
//! back the last 32 bytes as the tag and reporting a mismatch after the plaintext is out.
//!
//! One tag over the whole ciphertext means one HMAC, which cannot be split over cores; it
//! runs on a thread of its own (a [`Lane`]) while the calling thread reads, runs the
//! keystream and writes, so the two halves of the work overlap and the HMAC sets the pace.

use crate::chunked::HmacSha256;
use crate::keys::{PrivateKey, PublicKey};
use crate::keystream::{Aes, Keystream};
use crate::stream::{self, read_error, read_exact, read_full, PageBuf};
use crate::{Error, ErrorKind, Format, Inspection, Summary};
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

struct FileKeys(Zeroizing<[u8; KEY_BLOCK]>);

impl FileKeys {
    fn cipher(&self) -> Keystream {
        let iv = self.0[AES_KEY..AES_KEY + IV].try_into().expect("a fixed iv size");
        Keystream::new(Aes::Aes128, &self.0[..AES_KEY], iv)
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

    let cipher = keys.cipher();
    let mut summary = Summary { format: Format::Pghoard, plaintext_bytes: 0, file_bytes: header.len() as u64 };
    let ((), mac) = with_mac_lane(keys.mac(), BLOCK, |lane| loop {
        let mut buf = lane.buffer();
        let n = read_full(&mut input, &mut buf)?;
        cipher.apply_at(summary.plaintext_bytes, &mut buf[..n]);
        stream::write_all(&mut output, &buf[..n])?;
        summary.plaintext_bytes += n as u64;
        summary.file_bytes += n as u64;
        lane.send(buf, n);
        if n < BLOCK {
            return Ok(());
        }
    })?;
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
    input.seek(SeekFrom::Start(body_start)).map_err(read_error)?;
    let ((), mac) = with_mac_lane(keys.mac(), BLOCK, |lane| {
        let mut left = body;
        while left > 0 {
            let mut buf = lane.buffer();
            let n = usize::try_from(left).map_or(BLOCK, |l| l.min(BLOCK));
            read_exact(&mut input, &mut buf[..n], "the ciphertext")?;
            lane.send(buf, n);
            left -= n as u64;
        }
        Ok(())
    })?;
    let mut tag = [0; TAG];
    read_exact(&mut input, &mut tag, "the tag")?;
    mac.verify_slice(&tag).map_err(|_| tampered())?;

    input.seek(SeekFrom::Start(body_start)).map_err(read_error)?;
    let cipher = keys.cipher();
    let mut buf = PageBuf::new(BLOCK);
    let mut left = body;
    while left > 0 {
        let n = usize::try_from(left).map_or(BLOCK, |l| l.min(BLOCK));
        read_exact(&mut input, &mut buf[..n], "the ciphertext")?;
        cipher.apply_at(body - left, &mut buf[..n]);
        stream::write_all(&mut output, &buf[..n])?;
        left -= n as u64;
    }
    stream::flush(&mut output)?;
    Ok(Summary { format: Format::Pghoard, plaintext_bytes: body, file_bytes: end - start })
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
    let cipher = keys.cipher();
    let mut released = 0u64;
    // Each block goes to the HMAC thread as ciphertext and comes back to be decrypted and
    // written, in order, while this thread reads the next ones.
    let mut release = |lane: &mut Lane| -> Result<(), Error> {
        let (mut buf, n) = lane.recv().expect("a block is out when this is called");
        cipher.apply_at(released, &mut buf[..n]);
        released += n as u64;
        stream::write_all(&mut output, &buf[..n])?;
        lane.recycle(buf);
        Ok(())
    };
    let ((body, tag), mac) = with_mac_lane(keys.mac(), BLOCK + TAG, |lane| {
        // The last TAG bytes read are held back: they are the tag if the input ends here.
        let mut held = [0; TAG];
        let (mut held_len, mut body) = (0, 0u64);
        loop {
            if lane.idle() == 0 {
                release(lane)?;
            }
            let mut buf = lane.buffer();
            buf[..held_len].copy_from_slice(&held[..held_len]);
            let got = read_full(&mut input, &mut buf[held_len..])?;
            let total = held_len + got;
            let at_end = total < buf.len();
            if at_end && total < TAG {
                return Err(Error::new(ErrorKind::Truncated, "the file is truncated: it ends before its 32-byte tag"));
            }
            let data = total - TAG;
            held.copy_from_slice(&buf[data..total]);
            held_len = TAG;
            body += data as u64;
            lane.send(buf, data);
            if at_end {
                while lane.out() > 0 {
                    release(lane)?;
                }
                return Ok((body, held));
            }
        }
    })?;
    stream::flush(&mut output)?;
    mac.verify_slice(&tag).map_err(|_| tampered())?;
    Ok(Summary { format: Format::Pghoard, plaintext_bytes: body, file_bytes: (8 + wrapped.len() + TAG) as u64 + body })
}

/// Blocks a [`Lane`] holds at most: one being filled, one being hashed, one waiting.
const LANE_BLOCKS: usize = 3;

/// The calling thread's end of a thread that runs an HMAC over blocks in the order they
/// are sent and hands each back once hashed. The calling thread keeps all I/O (its reader
/// and writer need not be `Send`), so an error there simply ends the lane.
struct Lane {
    to: std::sync::mpsc::SyncSender<(PageBuf, usize)>,
    back: std::sync::mpsc::Receiver<(PageBuf, usize)>,
    spare: Vec<PageBuf>,
    made: usize,
    out: usize,
    size: usize,
}

impl Lane {
    /// A buffer of the lane's block size: a spare, a new one while fewer than
    /// [`LANE_BLOCKS`] exist, or else the oldest block back from the HMAC, recycled.
    fn buffer(&mut self) -> PageBuf {
        if let Some(buf) = self.spare.pop() {
            return buf;
        }
        if self.made < LANE_BLOCKS {
            self.made += 1;
            return PageBuf::new(self.size);
        }
        self.recv().expect("every buffer is out, so one comes back").0
    }

    /// Buffers ready to be filled without waiting for the HMAC.
    fn idle(&self) -> usize {
        self.spare.len() + LANE_BLOCKS - self.made
    }

    /// Blocks sent and not yet received back.
    fn out(&self) -> usize {
        self.out
    }

    /// Hands the first `n` bytes of `buf` to the HMAC, after all those sent before.
    fn send(&mut self, buf: PageBuf, n: usize) {
        self.to.send((buf, n)).expect("the HMAC thread runs until the lane is dropped");
        self.out += 1;
    }

    /// The oldest block sent, once hashed; `None` when none is out.
    fn recv(&mut self) -> Option<(PageBuf, usize)> {
        if self.out == 0 {
            return None;
        }
        self.out -= 1;
        Some(self.back.recv().expect("the HMAC thread hands back every block"))
    }

    fn recycle(&mut self, buf: PageBuf) {
        self.spare.push(buf);
    }
}

/// Runs `f` with a [`Lane`] of blocks of `size` bytes into `mac`; returns `f`'s value and
/// the MAC over every block sent. At most [`LANE_BLOCKS`] blocks exist, and each channel
/// holds as many, so neither side ever waits on a full channel for good.
fn with_mac_lane<T>(
    mac: HmacSha256,
    size: usize,
    f: impl FnOnce(&mut Lane) -> Result<T, Error>,
) -> Result<(T, HmacSha256), Error> {
    std::thread::scope(|scope| {
        let (to, blocks) = std::sync::mpsc::sync_channel::<(PageBuf, usize)>(LANE_BLOCKS);
        let (done, back) = std::sync::mpsc::sync_channel(LANE_BLOCKS);
        let hasher = scope.spawn(move || {
            let mut mac = mac;
            for (buf, n) in blocks {
                mac.update(&buf[..n]);
                if done.send((buf, n)).is_err() {
                    break;
                }
            }
            mac
        });
        let mut lane = Lane { to, back, spare: Vec::new(), made: 0, out: 0, size };
        let value = f(&mut lane);
        // Closing the way in ends the HMAC thread once it has hashed every block it was
        // sent; the way back stays open until then (the thread stops at a closed one, which
        // only a panic here leaves it).
        let Lane { to, back, .. } = lane;
        drop(to);
        let mac = hasher.join().expect("the HMAC thread does not panic");
        drop(back);
        Ok((value?, mac))
    })
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

    /// The HMAC thread sees every block sent, in order, whatever the number of blocks
    /// against the lane's buffers.
    #[test]
    fn a_mac_lane_hashes_every_block_in_order() {
        let key = <HmacSha256 as KeyInit>::new_from_slice(&[9; MAC_KEY]).unwrap();
        for blocks in [0usize, 1, 2, LANE_BLOCKS, LANE_BLOCKS + 1, 3 * LANE_BLOCKS + 2] {
            let data: Vec<u8> = (0..blocks * 100 + 7).map(|i| (i * 131 % 251) as u8).collect();
            let ((), mac) = with_mac_lane(key.clone(), 100, |lane| {
                for piece in data.chunks(100) {
                    let mut buf = lane.buffer();
                    buf[..piece.len()].copy_from_slice(piece);
                    lane.send(buf, piece.len());
                }
                Ok(())
            })
            .unwrap();
            let direct = key.clone().chain_update(&data).finalize();
            assert_eq!(mac.finalize(), direct, "{blocks} blocks");
        }
    }

    /// NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt) through rohmu's key layout.
    #[test]
    fn aes_128_ctr_known_answer() {
        let mut block = [0; KEY_BLOCK];
        block[..AES_KEY].copy_from_slice(&hex("2b7e151628aed2a6abf7158809cf4f3c"));
        block[AES_KEY..AES_KEY + IV].copy_from_slice(&hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
        let mut data = hex("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710");
        FileKeys(Zeroizing::new(block)).cipher().apply_at(0, &mut data);
        assert_eq!(
            data,
            hex("874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
                 5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee")
        );
    }
}
