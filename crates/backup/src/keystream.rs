//! AES-CTR as both formats use it (and openssl and rohmu's `cryptography` compute it): the
//! IV is the first 128-bit counter block, big-endian, and the counter carries through all
//! 128 bits. The block cipher is aws-lc's (through `aws-lc-rs`), whose AES-NI code runs
//! about twice as fast here as the `aes` crate's.
//!
//! A [`Keystream`] holds no position: [`Keystream::apply_at`] XORs the keystream at any byte
//! offset of the stream into a buffer, so chunks can be encrypted on any core in any order,
//! and a buffer may start or end anywhere inside a 16-byte block. The counter block for an
//! offset is computed here, `iv + offset / 16` modulo 2^128, and handed to aws-lc for each
//! call; within one call aws-lc increments it itself, carrying across the low 32 and 64 bits
//! (the tests compare both against RustCrypto's `ctr::Ctr128BE`).

use aws_lc_rs::cipher::{Algorithm, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;

const BLOCK: usize = 16;

/// The AES key sizes the two formats use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Aes {
    /// rohmu's `pghoa1`.
    Aes128,
    /// fleetwall's format.
    Aes256,
}

/// An AES-CTR keystream: a key and the initial counter block.
pub(crate) struct Keystream {
    key: EncryptingKey,
    iv: u128,
}

impl Keystream {
    /// Panics if `key` is not the size `aes` names; both formats take it from a fixed layout.
    pub(crate) fn new(aes: Aes, key: &[u8], iv: [u8; BLOCK]) -> Keystream {
        let algorithm: &'static Algorithm = match aes {
            Aes::Aes128 => &AES_128,
            Aes::Aes256 => &AES_256,
        };
        let key = UnboundCipherKey::new(algorithm, key).expect("the key size matches the algorithm");
        Keystream { key: EncryptingKey::ctr(key).expect("AES supports CTR"), iv: u128::from_be_bytes(iv) }
    }

    /// XORs the keystream from byte `offset` of the stream on into `data` (encrypting and
    /// decrypting alike).
    pub(crate) fn apply_at(&self, offset: u64, mut data: &mut [u8]) {
        let mut counter = self.iv.wrapping_add(u128::from(offset / BLOCK as u64));
        let skip = (offset % BLOCK as u64) as usize;
        if skip != 0 && !data.is_empty() {
            // The stream starts inside a block: run that block on a copy, keep its tail.
            let take = data.len().min(BLOCK - skip);
            let mut block = [0; BLOCK];
            block[skip..skip + take].copy_from_slice(&data[..take]);
            self.xor(counter, &mut block);
            data[..take].copy_from_slice(&block[skip..skip + take]);
            data = &mut data[take..];
            counter = counter.wrapping_add(1);
        }
        if !data.is_empty() {
            self.xor(counter, data);
        }
    }

    fn xor(&self, counter: u128, data: &mut [u8]) {
        let context = EncryptionContext::Iv128(FixedLength::from(counter.to_be_bytes()));
        self.key.less_safe_encrypt(data, context).expect("CTR takes any length and a 128-bit counter block");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::tests::hex;
    use ctr::cipher::{KeyIvInit, StreamCipher};

    fn reference(aes: Aes, key: &[u8], iv: [u8; BLOCK], data: &mut [u8]) {
        match aes {
            Aes::Aes128 => ctr::Ctr128BE::<aes::Aes128>::new_from_slices(key, &iv).unwrap().apply_keystream(data),
            Aes::Aes256 => ctr::Ctr128BE::<aes::Aes256>::new_from_slices(key, &iv).unwrap().apply_keystream(data),
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// IVs two blocks before their low 32, 64, 96 or all 128 bits wrap, and zero.
    fn wrapping_ivs() -> Vec<[u8; BLOCK]> {
        let near = |bits: u32| -> [u8; BLOCK] {
            let top = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
            // The bits above keep a pattern of ones and zeros, so that a carry into them
            // (or one that stops short of them) shows.
            let high = if bits == 128 { 0 } else { 0xa5a5_a5a5_a5a5_a5a5_a5a5_a5a5_a5a5_a5a5u128 >> bits << bits };
            (high | top).wrapping_sub(2).to_be_bytes()
        };
        vec![near(32), near(64), near(96), near(128), [0; BLOCK]]
    }

    /// NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt) and F.5.1 (CTR-AES128.Encrypt).
    #[test]
    fn nist_known_answers() {
        let iv: [u8; BLOCK] = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().unwrap();
        let plain = hex("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710");
        let cases = [
            (
                Aes::Aes256,
                "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                "601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5
                 2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6",
            ),
            (
                Aes::Aes128,
                "2b7e151628aed2a6abf7158809cf4f3c",
                "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
                 5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee",
            ),
        ];
        for (aes, key, want) in cases {
            let ks = Keystream::new(aes, &hex(key), iv);
            let mut data = plain.clone();
            ks.apply_at(0, &mut data);
            assert_eq!(data, hex(want), "{aes:?} in one call");
            // The same bytes block by block and in odd pieces, each at its own offset.
            for piece in [1, 5, 16, 17, 31] {
                let mut data = plain.clone();
                for (i, part) in data.chunks_mut(piece).enumerate() {
                    ks.apply_at((i * piece) as u64, part);
                }
                assert_eq!(data, hex(want), "{aes:?} in pieces of {piece}");
            }
        }
    }

    /// F.5.5's key and plaintext at IVs two blocks before the low 32, 64 and all 128 bits
    /// wrap, so that the carry happens inside one call. The expected ciphertexts are from
    /// openssl 3.0 (which `cryptography`, rohmu's AES, calls), computed once with
    /// `openssl enc -aes-256-ctr -K <F.5.5 key> -iv <iv>` over the F.5.5 plaintext.
    #[test]
    fn known_answers_across_the_wraps() {
        let key = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let plain = hex("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710");
        let cases = [
            (
                "f0f1f2f3f4f5f6f7f8f9fafbfffffffe",
                "17ac89ea66059dafe15850cfb34c83ed aae5a572166cf2c663efe8d4915c547a
                 a7855d63ac3a2b233fe4281cafb65af1 160abe0f73151cd852a2915b9cc8df00",
            ),
            (
                "f0f1f2f3f4f5f6f7fffffffffffffffe",
                "1d63fb58848196e0411dfa55855a2b3f bae1ec05ac959927fefd48c7c1946bd0
                 b81b1fce01d4089a0a345a7f0ab85bfd 883fc3bfb312c4e6e66828c0d3618d6b",
            ),
            (
                "fffffffffffffffffffffffffffffffe",
                "245c09a03b1a5a942b93561348a021ce 9511a376d65988420471696228b2ee9d
                 d5a0eac7379392c7f2b68dd9591afabb 678a3a18d435840c6dfcedab485266f4",
            ),
        ];
        for (iv, want) in cases {
            let iv: [u8; BLOCK] = hex(iv).try_into().unwrap();
            let ks = Keystream::new(Aes::Aes256, &key, iv);
            let mut data = plain.clone();
            ks.apply_at(0, &mut data);
            assert_eq!(data, hex(want), "iv {iv:02x?} in one call");
            let mut data = plain.clone();
            ks.apply_at(0, &mut data[..23]);
            ks.apply_at(23, &mut data[23..37]);
            ks.apply_at(37, &mut data[37..]);
            assert_eq!(data, hex(want), "iv {iv:02x?} cut at 23 and 37");
            let mut reference_out = plain.clone();
            reference(Aes::Aes256, &key, iv, &mut reference_out);
            assert_eq!(reference_out, hex(want), "RustCrypto's Ctr128BE agrees at iv {iv:02x?}");
        }
    }

    /// At every IV near a wrap, in one call and in pieces that are not multiples of 16 and
    /// straddle the wrapping block, aws-lc's keystream is RustCrypto's `Ctr128BE`.
    #[test]
    fn the_counter_carries_like_a_128_bit_big_endian_integer() {
        let key256 = pattern(32);
        let key128 = pattern(16);
        for iv in wrapping_ivs() {
            for (aes, key) in [(Aes::Aes256, &key256), (Aes::Aes128, &key128)] {
                let plain = pattern(10 * BLOCK + 9);
                let mut want = plain.clone();
                reference(aes, key, iv, &mut want);
                let ks = Keystream::new(aes, key, iv);
                let mut whole = plain.clone();
                ks.apply_at(0, &mut whole);
                assert_eq!(whole, want, "{aes:?} iv {iv:02x?} in one call");
                for cuts in [&[1usize, 33, 47, 48, 49][..], &[15, 17, 40, 41], &[7], &[45, 46, 47, 63, 64, 65]] {
                    let mut data = plain.clone();
                    let mut start = 0;
                    for &end in cuts.iter().chain([plain.len()].iter()) {
                        ks.apply_at(start as u64, &mut data[start..end]);
                        start = end;
                    }
                    assert_eq!(data, want, "{aes:?} iv {iv:02x?} cut at {cuts:?}");
                }
            }
        }
    }

    /// A chunk far into the stream gets the counter iv + offset / 16 (mod 2^128), the same
    /// as running a reference keystream up to there.
    #[test]
    fn a_seek_past_a_wrap_lands_on_the_right_counter() {
        let key = pattern(32);
        for iv in wrapping_ivs() {
            let plain = pattern(3 * 4096 + 5);
            let mut want = plain.clone();
            reference(Aes::Aes256, &key, iv, &mut want);
            let ks = Keystream::new(Aes::Aes256, &key, iv);
            for offset in [1usize, 16, 4095, 4096, 8197] {
                let mut tail = plain[offset..].to_vec();
                ks.apply_at(offset as u64, &mut tail);
                assert_eq!(tail, want[offset..], "iv {iv:02x?} from offset {offset}");
            }
        }
    }

    #[test]
    fn an_empty_buffer_is_left_alone() {
        let ks = Keystream::new(Aes::Aes128, &pattern(16), [0xff; BLOCK]);
        let mut empty: [u8; 0] = [];
        ks.apply_at(7, &mut empty);
        ks.apply_at(0, &mut empty);
    }
}
