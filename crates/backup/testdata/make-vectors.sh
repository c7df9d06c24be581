#!/usr/bin/env bash
# Builds the known-answer file vector.fwbk with openssl alone (no fleetwall code), so the
# test that decrypts it checks fleetwall's reading of the format against an independent
# implementation of the byte layout in src/lib.rs. Chunk size 2^10, three chunks.
# Run once; the outputs are committed (OAEP is randomised, so reruns differ).
set -euo pipefail
cd "$(dirname "$0")"
[ -f key.pem ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out key.pem 2>/dev/null
openssl pkey -in key.pem -pubout -out key.pub.pem
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
aes=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
iv=f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
mac=$(printf '%02x' $(seq 64 127) | tr -d ' ')
printf "$(printf '%s' "$aes$iv$mac" | sed 's/../\\x&/g')" > "$t/block"
openssl pkeyutl -encrypt -pubin -inkey key.pub.pem -pkeyopt rsa_padding_mode:oaep \
  -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$t/block" -out "$t/wrapped"
hmac() { openssl dgst -sha256 -mac HMAC -macopt "hexkey:$mac" -binary; }
# 2500 bytes of plaintext: "fleetwall backup vector 0000\n" ... cut to length.
for i in $(seq 0 99); do printf 'fleetwall backup vector %04d\n' "$i"; done | head -c 2500 > vector.plain
{ printf 'FWBK\x01\x0a\x01\x80'; cat "$t/wrapped"; } > "$t/header"
hmac < "$t/header" > "$t/htag"
openssl enc -aes-256-ctr -K "$aes" -iv "$iv" -in vector.plain -out "$t/body"
{ cat "$t/header" "$t/htag"
  for i in 0 1 2; do
    if [ $i = 2 ]; then last='\x01'; else last='\x00'; fi
    dd if="$t/body" bs=1024 skip=$i count=1 status=none > "$t/ct"
    cat "$t/ct"
    { cat "$t/htag"; printf "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x0$i$last"; cat "$t/ct"; } | hmac
  done
} > vector.fwbk

# The same plaintext in rohmu's pghoa1 layout: OAEP-SHA-1, AES-128-CTR, one HMAC over the
# ciphertext at the end.
aes128=2b7e151628aed2a6abf7158809cf4f3c
mac32=$(printf '%02x' $(seq 160 191) | tr -d ' ')
printf "$(printf '%s' "$aes128$iv$mac32" | sed 's/../\\x&/g')" > "$t/block1"
openssl pkeyutl -encrypt -pubin -inkey key.pub.pem -pkeyopt rsa_padding_mode:oaep \
  -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1 -in "$t/block1" -out "$t/wrapped1"
openssl enc -aes-128-ctr -K "$aes128" -iv "$iv" -in vector.plain -out "$t/body1"
{ printf 'pghoa1\x01\x80'; cat "$t/wrapped1" "$t/body1"
  openssl dgst -sha256 -mac HMAC -macopt "hexkey:$mac32" -binary < "$t/body1"
} > vector.pghoa1
