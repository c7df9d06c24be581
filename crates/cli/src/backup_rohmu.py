"""rohmu's own pghoa1 encryptor and decryptor over files, for fleetwall's interop tests and
`fleetwall bench --backup`: the reference implementation, called the way pghoard calls it.

usage: backup_rohmu.py encrypt PUBLIC_PEM IN OUT
       backup_rohmu.py decrypt PRIVATE_PEM IN OUT
Prints the seconds the work took (without interpreter start-up); exits non-zero on failure.
"""

from rohmu.encryptor import DecryptorFile, EncryptorFile

import sys
import time

BLOCK = 1 << 20


def main() -> None:
    verb, key, src, dst = sys.argv[1:5]
    with open(key, "rb") as f:
        pem = f.read()
    start = time.monotonic()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        if verb == "encrypt":
            sink = EncryptorFile(fout, pem)
            while block := fin.read(BLOCK):
                sink.write(block)
            sink.close()
        elif verb == "decrypt":
            source = DecryptorFile(fin, pem)
            while block := source.read(BLOCK):
                fout.write(block)
        else:
            sys.exit(f"unknown verb {verb}")
    print(time.monotonic() - start)


if __name__ == "__main__":
    main()
