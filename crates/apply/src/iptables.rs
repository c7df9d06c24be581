//! iptables + ipset, for legacy hosts: the ipsets restored, then both filter tables
//! (`iptables-restore` replaces each table in one commit); a change of set elements only
//! goes to the ipsets, as one `ipset restore` of additions, then removals.

use crate::delta;
use crate::{run, sha256_hex, Dataplane, Error, ErrorKind, How, Mode, Observed};
use fleetwall_ir::NodeRuleset;
use fleetwall_render::iptables::{INPUT_CHAIN, IPSET_PREFIX};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Where one listing ends and the next begins in a scratch namespace's output.
const PART: &str = "#fleetwall-part";

/// Loads the three files (`$1` ipsets, `$2` IPv4, `$3` IPv6) into an empty private
/// namespace and lists them back in the shape [`Iptables::observe`] reads.
const SCRATCH_LISTING: &str = "ipset restore -exist < \"$1\" && iptables-restore < \"$2\" && \
     ip6tables-restore < \"$3\" && iptables-save -t filter && echo '#fleetwall-part' && \
     ip6tables-save -t filter && echo '#fleetwall-part' && exec ipset save";

/// iptables + ipset, in a network namespace or (with `None`) wherever the process runs.
pub struct Iptables {
    netns: Option<String>,
    /// What this driver last loaded (see [`crate::Nft`]).
    loaded: Mutex<Option<NodeRuleset>>,
    /// The expected fingerprint of the last ruleset asked about, by ruleset hash.
    expected: Mutex<Option<(String, String)>>,
}

impl Iptables {
    /// Programs `netns` (None: the namespace this process runs in).
    pub fn new(netns: Option<String>) -> Iptables {
        Iptables { netns, loaded: Mutex::new(None), expected: Mutex::new(None) }
    }

    fn ns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn full(&self, rs: &NodeRuleset) -> Result<(), Error> {
        let r = fleetwall_render::iptables::render(rs);
        let ns = self.ns();
        run(ns, "ipset", &["restore", "-exist"], Some(&swapped_in(&r.ipset)))?;
        run(ns, "iptables-restore", &[], Some(&r.v4))?;
        run(ns, "ip6tables-restore", &[], Some(&r.v6))?;
        // Sets of an earlier ruleset are no longer referenced now: destroyed, so that what
        // the kernel lists is this ruleset alone (else every drift check would differ).
        let keep: BTreeSet<String> = rs.sets.iter().map(|s| format!("{IPSET_PREFIX}{}", s.name.as_str())).collect();
        let stale: String = run(ns, "ipset", &["list", "-n"], None)?
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(IPSET_PREFIX) && !keep.contains(*n))
            .map(|n| format!("destroy {n}\n"))
            .collect();
        if !stale.is_empty() {
            run(ns, "ipset", &["restore"], Some(&stale))?;
        }
        Ok(())
    }
}

/// The renderer's ipset file, rewritten so that no set is ever seen half-filled: each set
/// is filled under a temporary name (`fw~0`, `fw~1`, ...) and swapped in whole (`ipset
/// swap` exchanges the two sets atomically; rules that match the set see the new
/// elements from then on), then the temporary set is destroyed. Each set is still created
/// under its own name first, so that the tables restored next can refer to it.
fn swapped_in(ipset: &str) -> String {
    let mut temp: Vec<(String, String)> = Vec::new();
    let mut o = String::new();
    for line in ipset.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let rename = |temp: &[(String, String)], name: &str| {
            temp.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).unwrap_or_else(|| name.to_string())
        };
        match words.as_slice() {
            ["create", name, rest @ ..] => {
                let t = format!("fw~{}", temp.len());
                o += &format!(
                    "{line}
create {t} {}
flush {t}
",
                    rest.join(" ")
                );
                temp.push((name.to_string(), t));
            }
            ["flush", name] if temp.iter().any(|(n, _)| n == name) => {}
            [verb @ ("add" | "del"), name, rest @ ..] => {
                o += &format!(
                    "{verb} {} {}
",
                    rename(&temp, name),
                    rest.join(" ")
                );
            }
            _ => {
                o += &format!(
                    "{line}
"
                )
            }
        }
    }
    for (name, t) in &temp {
        o += &format!(
            "swap {t} {name}
destroy {t}
"
        );
    }
    o
}

/// The state-free shape of `iptables-save` output: no comment lines (they carry the
/// time), chain counters zeroed.
fn normalize_save(text: &str) -> String {
    let mut o = String::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.strip_prefix(':').and_then(|l| l.rsplit_once(' ')) {
            Some((chain, _counters)) => o += &format!(":{chain} [0:0]\n"),
            None => o += &format!("{line}\n"),
        }
    }
    o
}

/// Our sets in `ipset save` output, in a stable shape: a set's create line without its
/// random hash seed and its size (which grows with use), elements sorted (hash order is
/// random).
fn normalize_ipsets(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|n| n.starts_with(IPSET_PREFIX)))
        .map(|l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["create", name, kind, "family", fam, ..] => format!("create {name} {kind} family {fam}"),
            _ => l.trim().to_string(),
        })
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// The fingerprint of the three listings; None when our chain is missing.
fn fingerprint(v4: &str, v6: &str, ipsets: &str) -> Option<String> {
    if !v4.lines().any(|l| l.starts_with(&format!(":{INPUT_CHAIN} "))) {
        return None;
    }
    let text = format!("{}{PART}\n{}{PART}\n{}", normalize_save(v4), normalize_save(v6), normalize_ipsets(ipsets));
    Some(sha256_hex(text.as_bytes()))
}

/// A private directory of its own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, Error> {
        use std::os::unix::fs::DirBuilderExt;
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fleetwall-scratch-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error { kind: ErrorKind::Spawn, message: format!("cannot create {}: {e}", path.display()) })?;
        Ok(TempDir(path))
    }

    fn write(&self, name: &str, text: &str) -> Result<String, Error> {
        let path = self.0.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Error { kind: ErrorKind::Spawn, message: format!("cannot write {}: {e}", path.display()) })?;
        Ok(path.display().to_string())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Dataplane for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn load(&self, rs: &NodeRuleset, how: How) -> Result<Mode, Error> {
        let batch = |d: &[delta::SetDelta]| {
            run(self.ns(), "ipset", &["restore", "-exist"], Some(&delta::ipset_batch(IPSET_PREFIX, d))).map(drop)
        };
        delta::load(&self.loaded, rs, how, batch, || self.full(rs))
    }

    fn observe(&self) -> Result<Option<Observed>, Error> {
        let ns = self.ns();
        let v4 = run(ns, "iptables-save", &["-t", "filter"], None)?;
        let v6 = run(ns, "ip6tables-save", &["-t", "filter"], None)?;
        let ipsets = run(ns, "ipset", &["save"], None)?;
        let rules = saved_rule_hashes(&v4, &v6);
        Ok(fingerprint(&v4, &v6, &ipsets).map(|fingerprint| Observed { fingerprint, rules }))
    }

    fn expected(&self, rs: &NodeRuleset) -> Result<String, Error> {
        let r = fleetwall_render::iptables::render(rs);
        let key = sha256_hex(format!("{}{PART}{}{PART}{}", r.ipset, r.v4, r.v6).as_bytes());
        crate::cached_expected(&self.expected, key, || {
            let dir = TempDir::new()?;
            let files = [dir.write("ipset", &r.ipset)?, dir.write("v4", &r.v4)?, dir.write("v6", &r.v6)?];
            let mut args = vec!["--net", "sh", "-c", SCRATCH_LISTING, "sh"];
            args.extend(files.iter().map(String::as_str));
            let listing = run(None, "unshare", &args, None)
                .map_err(|e| Error { message: format!("cannot list the ruleset in a scratch namespace: {e}"), ..e })?;
            let parts: Vec<&str> = listing.split(&format!("{PART}\n")).collect();
            let [v4, v6, ipsets] = parts.as_slice() else {
                return Err(Error {
                    kind: ErrorKind::Tool,
                    message: format!("the scratch listing has {} parts, not 3", parts.len()),
                });
            };
            let fp = fingerprint(v4, v6, ipsets).ok_or_else(|| Error {
                kind: ErrorKind::Tool,
                message: format!("the scratch namespace lists no chain {INPUT_CHAIN} after loading the ruleset"),
            })?;
            Ok(fp)
        })
    }

    fn revoke(&self, rs: &NodeRuleset) -> Result<usize, Error> {
        crate::revoke(self.ns(), rs)
    }
}

/// The rule hashes of our chains in `iptables-save` output: per rule of the IR, once
/// (iptables writes one IR rule as several lines: multiport chunks, one ICMP type each,
/// and the v4 and v6 tables each hold the rules of their family). Input chain first.
fn saved_rule_hashes(v4: &str, v6: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for chain in [INPUT_CHAIN, fleetwall_render::iptables::OUTPUT_CHAIN] {
        let prefix = format!("-A {chain} ");
        let mut seen = BTreeSet::new();
        for line in v4.lines().chain(v6.lines()).filter(|l| l.starts_with(&prefix)) {
            let hash = line
                .split_once("--comment \"")
                .or_else(|| line.split_once("--comment "))
                .and_then(|(_, c)| crate::comment_hash(c))
                .unwrap_or_default()
                .to_string();
            if hash.is_empty() || seen.insert(hash.clone()) {
                out.push(hash);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_load_swaps_each_set_in_whole() {
        let rendered = "# header\ncreate fw-ipf4 hash:net family inet hashsize 1024 maxelem 65536\nflush fw-ipf4\n\
                        add fw-ipf4 10.0.0.0/8\nadd fw-ipf4 192.0.2.1\ncreate fw-mgmt6 hash:net family inet6 \
                        hashsize 1024 maxelem 65536\nflush fw-mgmt6\n";
        assert_eq!(
            swapped_in(rendered),
            "# header\n\
             create fw-ipf4 hash:net family inet hashsize 1024 maxelem 65536\n\
             create fw~0 hash:net family inet hashsize 1024 maxelem 65536\nflush fw~0\n\
             add fw~0 10.0.0.0/8\nadd fw~0 192.0.2.1\n\
             create fw-mgmt6 hash:net family inet6 hashsize 1024 maxelem 65536\n\
             create fw~1 hash:net family inet6 hashsize 1024 maxelem 65536\nflush fw~1\n\
             swap fw~0 fw-ipf4\ndestroy fw~0\nswap fw~1 fw-mgmt6\ndestroy fw~1\n"
        );
    }

    #[test]
    fn listings_lose_their_state_and_order_but_not_their_rules() {
        let v4 = "# Generated by iptables-save v1.8.9 on Tue\n*filter\n:INPUT ACCEPT [12:3400]\n\
                  :fleetwall-input - [0:0]\n-A INPUT -j fleetwall-input\nCOMMIT\n# Completed on Tue\n";
        assert_eq!(
            normalize_save(v4),
            "*filter\n:INPUT ACCEPT [0:0]\n:fleetwall-input - [0:0]\n-A INPUT -j fleetwall-input\nCOMMIT\n"
        );
        let a = "create fw-ipf4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n\
                 add fw-ipf4 10.0.0.1\nadd fw-ipf4 10.0.0.0/31\ncreate other hash:ip family inet\nadd other 1.2.3.4\n";
        let b = "create fw-ipf4 hash:net family inet hashsize 2048 maxelem 65536 bucketsize 12 initval 0x2\n\
                 add fw-ipf4 10.0.0.0/31\nadd fw-ipf4 10.0.0.1\n";
        assert_eq!(normalize_ipsets(a), normalize_ipsets(b));
        assert_eq!(fingerprint(v4, "", a), fingerprint(v4, "", b));
        assert_ne!(fingerprint(v4, "", a), fingerprint(v4, "", "add fw-ipf4 10.0.0.2\n"));
        assert_eq!(fingerprint("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", "", a), None, "no chain of ours");
    }
}
