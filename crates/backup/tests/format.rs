//! The formats end to end: known-answer files built by openssl alone
//! (testdata/make-vectors.sh), round trips over random sizes, every tamper position, the
//! wrong key, truncation, and the streaming rules of each format.

use fleetwall_backup::{decrypt, decrypt_stream, encrypt, inspect, ErrorKind, Format, PrivateKey, PublicKey, Release};
use proptest::prelude::*;
use std::io::Cursor;
use std::sync::OnceLock;

const KEY: &str = include_str!("../testdata/key.pem");
const PUB: &str = include_str!("../testdata/key.pub.pem");
const PLAIN: &[u8] = include_bytes!("../testdata/vector.plain");

fn private() -> &'static PrivateKey {
    static K: OnceLock<PrivateKey> = OnceLock::new();
    K.get_or_init(|| PrivateKey::from_pem(KEY).unwrap())
}

fn public() -> &'static PublicKey {
    static K: OnceLock<PublicKey> = OnceLock::new();
    K.get_or_init(|| PublicKey::from_pem(PUB).unwrap())
}

/// A second, unrelated pair, for the wrong-key cases.
fn other_private() -> &'static PrivateKey {
    static K: OnceLock<PrivateKey> = OnceLock::new();
    K.get_or_init(|| PrivateKey::from_pem(&fleetwall_backup::generate_keypair().unwrap().private_pem).unwrap())
}

fn seal(format: Format, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let s = encrypt(format, public(), plain, &mut out).unwrap();
    assert_eq!((s.plaintext_bytes, s.file_bytes), (plain.len() as u64, out.len() as u64));
    out
}

fn open(file: &[u8]) -> Result<Vec<u8>, fleetwall_backup::Error> {
    let mut out = Vec::new();
    decrypt(private(), None, Cursor::new(file), &mut out).map(|_| out)
}

fn open_stream(file: &[u8], release: Release) -> (Result<fleetwall_backup::Summary, fleetwall_backup::Error>, Vec<u8>) {
    let mut out = Vec::new();
    let r = decrypt_stream(private(), None, release, file, &mut out);
    (r, out)
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn the_openssl_built_fleetwall_file_decrypts_to_its_plaintext() {
    let file = std::fs::read("testdata/vector.fwbk").unwrap();
    assert_eq!(open(&file).unwrap(), PLAIN);
    let (r, out) = open_stream(&file, Release::Authenticated);
    assert_eq!((r.unwrap().plaintext_bytes, out.as_slice()), (PLAIN.len() as u64, PLAIN));
    let i = inspect(file.as_slice()).unwrap();
    assert_eq!(
        (i.format, i.rsa_bits, i.header_bytes, i.chunk_bytes, i.plaintext_bytes, i.file_bytes),
        (Format::Fleetwall, 3072, 424, Some(1024), 2500, 3020)
    );
}

#[test]
fn the_openssl_built_pghoard_file_decrypts_to_its_plaintext() {
    let file = std::fs::read("testdata/vector.pghoa1").unwrap();
    assert_eq!(open(&file).unwrap(), PLAIN);
    let (r, out) = open_stream(&file, Release::Unauthenticated);
    assert_eq!((r.unwrap().plaintext_bytes, out.as_slice()), (PLAIN.len() as u64, PLAIN));
    let i = inspect(file.as_slice()).unwrap();
    assert_eq!((i.format, i.rsa_bits, i.header_bytes, i.plaintext_bytes), (Format::Pghoard, 3072, 392, 2500));
}

#[test]
fn the_fleetwall_body_is_plain_aes_256_ctr_in_1_mib_chunks() {
    let file = seal(Format::Fleetwall, &pseudo_random((2 << 20) + 5, 1));
    // header 424, two full chunks of 1 MiB + tag, a last chunk of 5 bytes + tag.
    assert_eq!(file.len(), 424 + 2 * ((1 << 20) + 32) + 5 + 32);
    assert_eq!(&file[..8], b"FWBK\x01\x14\x01\x80");
    let exact = seal(Format::Fleetwall, &pseudo_random(1 << 20, 2));
    assert_eq!(exact.len(), 424 + (1 << 20) + 32 + 32, "a multiple of the chunk size ends with an empty chunk");
}

#[test]
fn sizes_around_the_block_and_chunk_edges_round_trip_in_both_formats() {
    for len in [0, 1, 15, 16, 17, 1023, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (1 << 20) + 3] {
        let plain = pseudo_random(len, len as u64);
        for format in [Format::Fleetwall, Format::Pghoard] {
            let file = seal(format, &plain);
            assert_eq!(open(&file).unwrap(), plain, "{format:?} {len}");
            let (r, out) = open_stream(&file, Release::Unauthenticated);
            assert_eq!((r.unwrap().plaintext_bytes, out), (len as u64, plain.clone()), "{format:?} {len} stream");
            assert_eq!(inspect(file.as_slice()).unwrap().plaintext_bytes, len as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_sizes_round_trip(len in 0usize..(3 << 20), seed in any::<u64>(), pghoard in any::<bool>()) {
        let format = if pghoard { Format::Pghoard } else { Format::Fleetwall };
        let plain = pseudo_random(len, seed);
        let file = seal(format, &plain);
        prop_assert_eq!(open(&file).unwrap(), plain);
    }
}

/// Every byte position of a small file (header, wrapped key, header tag, each chunk and
/// each tag), one bit at a time: decryption fails and, for fleetwall, writes nothing of the
/// chunk that was hit.
#[test]
fn a_flipped_bit_anywhere_is_detected() {
    for format in [Format::Fleetwall, Format::Pghoard] {
        let plain = pseudo_random(40, 9);
        let file = seal(format, &plain);
        for pos in 0..file.len() {
            let mut bad = file.clone();
            bad[pos] ^= 1 << (pos % 8);
            let e = open(&bad).expect_err(&format!("{format:?}: flip at {pos} went unnoticed"));
            assert!(
                matches!(
                    e.kind,
                    ErrorKind::UnknownFormat
                        | ErrorKind::UnsupportedVersion
                        | ErrorKind::Malformed
                        | ErrorKind::WrongKey
                        | ErrorKind::Truncated
                        | ErrorKind::Tampered
                ),
                "{format:?} at {pos}: {e:?}"
            );
        }
    }
}

#[test]
fn a_flipped_bit_in_a_later_chunk_stops_before_that_chunk() {
    let plain = pseudo_random(3 << 20, 3);
    let mut file = seal(Format::Fleetwall, &plain);
    let chunk2 = 424 + 2 * ((1 << 20) + 32);
    file[chunk2 + 10] ^= 4;
    let (r, out) = open_stream(&file, Release::Authenticated);
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Tampered);
    assert_eq!(e.message, "integrity check failed at chunk 2: the file was altered, truncated or reordered");
    assert_eq!(out, &plain[..2 << 20], "the two authenticated chunks, nothing of the third");
}

#[test]
fn swapped_chunks_are_detected() {
    let plain = pseudo_random(3 << 20, 4);
    let file = seal(Format::Fleetwall, &plain);
    let c = (1 << 20) + 32;
    let mut bad = file[..424].to_vec();
    bad.extend_from_slice(&file[424 + c..424 + 2 * c]);
    bad.extend_from_slice(&file[424..424 + c]);
    bad.extend_from_slice(&file[424 + 2 * c..]);
    assert_eq!(open(&bad).unwrap_err().kind, ErrorKind::Tampered);
}

#[test]
fn truncation_anywhere_is_detected() {
    for format in [Format::Fleetwall, Format::Pghoard] {
        let plain = pseudo_random((2 << 20) + 100, 5);
        let file = seal(format, &plain);
        let c = (1 << 20) + 32;
        for cut in [1, 5, 7, 100, 424, 430, 424 + c, 424 + 2 * c, file.len() - 33, file.len() - 1] {
            let e = open(&file[..cut]).expect_err(&format!("{format:?} cut at {cut}"));
            assert!(matches!(e.kind, ErrorKind::Truncated | ErrorKind::Tampered), "{format:?} {cut}: {e:?}");
        }
    }
    let file = seal(Format::Fleetwall, &pseudo_random(1 << 20, 6));
    let e = open(&file[..424 + (1 << 20) + 32]).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Truncated, "the file is truncated: chunk 1 is missing or cut short (no last chunk was found)")
    );
}

#[test]
fn the_wrong_key_is_refused_before_any_output() {
    for format in [Format::Fleetwall, Format::Pghoard] {
        let file = seal(format, b"secret");
        let mut out = Vec::new();
        let e = decrypt(other_private(), None, Cursor::new(&file), &mut out).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongKey);
        assert_eq!(
            e.message,
            "wrong key: the file key does not unwrap with this private key (or the header's wrapped key was altered)"
        );
        assert!(out.is_empty());
    }
}

#[test]
fn a_pghoard_stream_needs_an_explicit_unauthenticated_release() {
    let file = seal(Format::Pghoard, b"0123456789abcdef0123");
    let (r, out) = open_stream(&file, Release::Authenticated);
    assert_eq!(r.unwrap_err().kind, ErrorKind::NeedsUnauthenticatedRelease);
    assert!(out.is_empty());
    let mut bad = file.clone();
    let last = bad.len() - 40;
    bad[last] ^= 1;
    let (r, out) = open_stream(&bad, Release::Unauthenticated);
    assert_eq!(r.unwrap_err().kind, ErrorKind::Tampered, "reported at the end");
    assert_eq!(out.len(), 20, "the unauthenticated plaintext was released, as asked");
}

#[test]
fn an_empty_input_is_rohmus_empty_file_only_when_asked_for() {
    let mut out = Vec::new();
    let e = decrypt(private(), None, Cursor::new(b""), &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Truncated);
    let s = decrypt(private(), Some(Format::Pghoard), Cursor::new(b""), &mut out).unwrap();
    assert_eq!((s.format, s.plaintext_bytes, out.len()), (Format::Pghoard, 0, 0));
    let e = decrypt(private(), Some(Format::Fleetwall), Cursor::new(b""), &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Truncated);
}

#[test]
fn the_format_asked_for_must_be_the_format_found() {
    let file = seal(Format::Pghoard, b"x");
    let e = decrypt(private(), Some(Format::Fleetwall), Cursor::new(&file), Vec::new()).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::UnknownFormat, "expected a fleetwall file, found a pghoard file")
    );
    let e = open(b"PK\x03\x04 a zip file").unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownFormat);
}

#[test]
fn a_future_version_and_an_absurd_chunk_size_are_refused() {
    let mut file = seal(Format::Fleetwall, b"x");
    file[4] = 2;
    let e = open(&file).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnsupportedVersion);
    file[4] = 1;
    file[5] = 40;
    let e = open(&file).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Malformed, "the header's chunk size 2^40 is outside 2^10..=2^24")
    );
}
