//! `fleetwall backup keygen|encrypt|decrypt|inspect`: the files and exit codes around the
//! `fleetwall-backup` crate.
//!
//! The key decision is that OUT never holds a partial or unauthenticated result: output
//! goes to a 0600 temporary file next to OUT, renamed over it only on success and removed
//! otherwise. Standard output (`-`) gets plaintext only as it is authenticated, except for
//! a pghoard file read from a pipe, which needs `--unauthenticated-stream` and then ends
//! with exit 1 when its tag turns out wrong. Exit 1 is a bad key or file (wrong key,
//! tampered, truncated, not RSA-3072), 2 a usage or environment problem.

use crate::commands::Outcome;
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use fleetwall_backup::{ErrorKind, Format, PrivateKey, PublicKey, Release};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `fleetwall backup` verbs.
#[derive(Subcommand)]
pub enum BackupCmd {
    /// Generate an RSA-3072 key pair: DIR/backup.pem (private, PKCS#8, mode 0600) and
    /// DIR/backup.pub.pem (public, SPKI).
    Keygen {
        /// Directory to write the pair into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Encrypt IN to OUT for a public key (`-` is stdin or stdout).
    Encrypt {
        /// The service's public key (PEM).
        #[arg(long, value_name = "PEM")]
        public_key: PathBuf,
        /// File format: fleetwall (chunked, AES-256) or pghoard (rohmu's pghoa1, AES-128).
        #[arg(long, value_enum, default_value_t = FormatArg::Fleetwall)]
        format: FormatArg,
        /// Plaintext input, or `-`.
        input: PathBuf,
        /// Encrypted output, or `-`.
        output: PathBuf,
    },
    /// Decrypt IN to OUT with a private key; the format is detected (`-` is stdin or stdout).
    Decrypt {
        /// The service's private key (PEM, PKCS#8 or PKCS#1).
        #[arg(long, value_name = "PEM")]
        private_key: PathBuf,
        /// Insist on a format; `pghoard` also accepts an empty input (rohmu's empty backup).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Allow a pghoard file read from stdin to stream to stdout before its single tag
        /// (at the end) is checked; a bad tag still exits 1, after the output was written.
        #[arg(long)]
        unauthenticated_stream: bool,
        /// Encrypted input, or `-`.
        input: PathBuf,
        /// Plaintext output, or `-`.
        output: PathBuf,
    },
    /// Show a file's format, RSA key size and sizes (no key needed, no secrets shown).
    Inspect {
        /// Encrypted file, or `-`.
        file: PathBuf,
    },
    /// Print a service's backup key from the control plane (PEM): the public key, or with
    /// --private the private one (admin token only; every read is audited).
    Key {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
        /// The private key, for a restore.
        #[arg(long)]
        private: bool,
    },
}

/// The file formats, as the CLI names them.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    /// fleetwall's chunked format (the seed's parameters).
    Fleetwall,
    /// rohmu/pghoard's pghoa1 format.
    Pghoard,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Fleetwall => Format::Fleetwall,
            FormatArg::Pghoard => Format::Pghoard,
        }
    }
}

pub fn run(cmd: BackupCmd, client: &crate::control::ClientArgs) -> Result<Outcome> {
    let result = match cmd {
        BackupCmd::Keygen { out } => keygen(&out),
        BackupCmd::Encrypt { public_key, format, input, output } => {
            encrypt(&public_key, format.into(), &input, &output)
        }
        BackupCmd::Decrypt { private_key, format, unauthenticated_stream, input, output } => {
            decrypt(&private_key, format.map(Format::from), unauthenticated_stream, &input, &output)
        }
        BackupCmd::Inspect { file } => inspect(&file),
        BackupCmd::Key { names, private } => {
            return crate::control::client(client, crate::control::ClientCmd::BackupKey { names, private });
        }
    };
    match result {
        Ok(()) => Ok(Outcome::Ok),
        Err(e) => match e.downcast_ref::<fleetwall_backup::Error>().map(|e| e.kind) {
            Some(ErrorKind::Io | ErrorKind::Random | ErrorKind::NeedsUnauthenticatedRelease) | None => Err(e),
            Some(_) => {
                eprintln!("fleetwall backup: {e:#}");
                Ok(Outcome::Invalid)
            }
        },
    }
}

fn keygen(dir: &Path) -> Result<()> {
    let (private, public) = (dir.join("backup.pem"), dir.join("backup.pub.pem"));
    for p in [&private, &public] {
        if p.exists() {
            bail!("{} already exists; keys are never overwritten", p.display());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pair = fleetwall_backup::generate_keypair()?;
    write_new(&private, pair.private_pem.as_bytes(), 0o600)?;
    write_new(&public, pair.public_pem.as_bytes(), 0o644)?;
    println!("wrote {} (private, 0600) and {} (public)", private.display(), public.display());
    Ok(())
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}

fn read_key(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read the key {}", path.display()))
}

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

fn open_input(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

fn encrypt(key: &Path, format: Format, input: &Path, output: &Path) -> Result<()> {
    let key = PublicKey::from_pem(&read_key(key)?).map_err(anyhow::Error::new)?;
    let summary = with_output(output, |out| {
        if is_dash(input) {
            fleetwall_backup::encrypt(format, &key, io::stdin().lock(), out)
        } else {
            fleetwall_backup::encrypt(format, &key, open_input(input)?, out)
        }
        .map_err(anyhow::Error::new)
    })?;
    eprintln!(
        "encrypted {} bytes into {} bytes ({}, RSA-{})",
        summary.plaintext_bytes,
        summary.file_bytes,
        summary.format.name(),
        key.bits()
    );
    Ok(())
}

fn decrypt(key: &Path, expect: Option<Format>, unauthenticated: bool, input: &Path, output: &Path) -> Result<()> {
    let key = PrivateKey::from_pem(&read_key(key)?).map_err(anyhow::Error::new)?;
    let to_stdout = is_dash(output);
    let summary = with_output(output, |out| {
        let r = if is_dash(input) {
            // A pghoard file from a pipe can only be decrypted before its tag is seen; into
            // a temporary file that is fine (it is removed unless the tag checks out).
            let release = if unauthenticated || !to_stdout { Release::Unauthenticated } else { Release::Authenticated };
            fleetwall_backup::decrypt_stream(&key, expect, release, io::stdin().lock(), out)
        } else {
            fleetwall_backup::decrypt(&key, expect, open_input(input)?, out)
        };
        r.map_err(|e| match e.kind {
            ErrorKind::NeedsUnauthenticatedRelease => anyhow::anyhow!(
                "a pghoard file is authenticated by one tag at its very end: decrypt to a file (OUT other than -), \
                 or pass --unauthenticated-stream to stream it before the tag is checked",
            ),
            ErrorKind::Tampered if to_stdout && unauthenticated => {
                anyhow::Error::new(e).context("the plaintext already written to stdout is NOT authentic")
            }
            _ => anyhow::Error::new(e),
        })
    })?;
    if expect == Some(Format::Pghoard) && summary.file_bytes == 0 {
        eprintln!("note: an empty input is rohmu's empty backup; it carries no tag, so it is not authenticated");
    }
    eprintln!("decrypted {} bytes ({})", summary.plaintext_bytes, summary.format.name());
    Ok(())
}

/// Runs `f` on stdout, or on a temporary file next to `path` that replaces `path` only
/// when `f` succeeds. A file is written by a thread of its own, so that the copy into the
/// page cache overlaps the crypto on the other core; at most `QUEUE` blocks wait for it.
fn with_output<T>(path: &Path, f: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
    if is_dash(path) {
        let mut out = io::stdout().lock();
        return f(&mut out);
    }
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.fleetwall-{}.tmp", name.to_string_lossy(), std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let writer = scope.spawn(move || -> io::Result<File> {
            for block in rx {
                file.write_all(&block)?;
            }
            file.sync_all()?;
            Ok(file)
        });
        let mut queue = Queued { tx, block: Vec::with_capacity(BLOCK) };
        let value = f(&mut queue).and_then(|v| {
            queue.flush()?;
            Ok(v)
        });
        drop(queue);
        let written = writer.join().expect("the writer thread does not panic");
        let value = value?;
        written.with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(value)
    })
    .and_then(|v| {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        Ok(v)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

const BLOCK: usize = 1 << 20;
const QUEUE: usize = 4;

/// Collects writes into 1 MiB blocks for the writer thread.
struct Queued {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    block: Vec<u8>,
}

impl Write for Queued {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        // A send fails only when the writer stopped on an error, which its join reports.
        self.tx.send(block).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output writer stopped"))
    }
}

fn inspect(path: &Path) -> Result<()> {
    let i = if is_dash(path) {
        fleetwall_backup::inspect(io::stdin().lock())
    } else {
        fleetwall_backup::inspect(io::BufReader::with_capacity(1 << 20, open_input(path)?))
    }
    .map_err(anyhow::Error::new)?;
    let mut out = io::stdout().lock();
    let version = i.version.map_or(String::new(), |v| format!(" (version {v})"));
    writeln!(out, "format:     {}{version}", i.format.name())?;
    writeln!(out, "rsa key:    {} bits", i.rsa_bits)?;
    writeln!(out, "header:     {} bytes", i.header_bytes)?;
    if let Some(c) = i.chunk_bytes {
        writeln!(out, "chunk:      {c} bytes")?;
    }
    writeln!(out, "tags:       {} bytes", i.tag_bytes)?;
    writeln!(out, "plaintext:  {} bytes", i.plaintext_bytes)?;
    writeln!(out, "file:       {} bytes", i.file_bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn a_failed_write_leaves_neither_out_nor_a_temporary_file() {
        let dir = std::env::temp_dir().join(format!("fleetwall-backup-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        std::fs::write(&out, b"old").unwrap();
        let r: Result<()> = with_output(&out, |w| {
            w.write_all(b"partial")?;
            bail!("failed half way")
        });
        assert!(r.is_err());
        assert_eq!(read_all(&out), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the temporary file is gone");
        with_output(&out, |w| Ok(w.write_all(b"new")?)).unwrap();
        assert_eq!(read_all(&out), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
