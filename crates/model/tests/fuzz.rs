//! A bounded fuzz of the fleet loader: the examples, mutated at random (byte flips,
//! truncations, duplicated and dropped lines, YAML-special snippets such as anchors,
//! aliases, merge keys, tags and deep nesting, very long scalars, NUL and control
//! characters, invalid UTF-8 read lossily, nested aliases), fed to `load` — parse, raw, validate, the
//! path `fleetwall check` takes. No input may panic, overflow the stack, expand past
//! `yaml::node_budget` or nest past `yaml::MAX_DEPTH`, or use more heap than its length
//! allows; every refused input must say where.
//!
//! By default it runs for 15 seconds or 4,000 cases, whichever ends first.
//! `FLEETWALL_FUZZ_SECS=600` runs for ten minutes (with no case limit);
//! `FLEETWALL_FUZZ_SEED=<n>` replays a run (the seed is printed, and the cases of a seed
//! are always the same, in the same order). The case being tried is written to
//! `$TMPDIR/fleetwall-fuzz-<seed>.yaml` first, so it is still there when a case aborts
//! the process; `fleetwall check` on that file replays it.
//!
//! This file is its own test binary, so its counting allocator sees only this test.

use fleetwall_model::yaml::{self, NodeKind, MAX_DEPTH};
use fleetwall_model::{load, Catalog, Severity};
use fleetwall_synth::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

mod heap;

/// Heap a case may peak at: a node budget's worth of tree (and its anchor copies) per
/// byte, and a fixed allowance for the catalog and the validator's tables.
fn heap_bound(len: usize) -> usize {
    8 * 1024 * len + (16 << 20)
}

const SNIPPETS: [&str; 24] = [
    "&a ",
    "*a",
    "&a [x, x, x, x]",
    "[*a, *a, *a, *a, *a, *a, *a, *a]",
    "<<: *a",
    "!!binary ",
    "!!str ",
    "!custom ",
    "? ",
    "- ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "|\n",
    ">-\n",
    "#",
    "\u{feff}",
    ": ",
];

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.sort();
    assert!(v.len() >= 4, "the examples are missing");
    v
}

fn pick<'a>(rng: &mut Rng, items: &'a [String]) -> &'a String {
    &items[rng.below(items.len() as u64) as usize]
}

/// A byte offset of `b`, at most its length.
fn at(rng: &mut Rng, b: &[u8]) -> usize {
    rng.below(b.len() as u64 + 1) as usize
}

/// One random change to `b`.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    let lines: Vec<Vec<u8>> = b.split(|c| *c == b'\n').map(<[u8]>::to_vec).collect();
    let line = rng.below(lines.len() as u64) as usize;
    let with_lines = |f: &mut dyn FnMut(&mut Vec<Vec<u8>>)| {
        let mut l = lines.clone();
        f(&mut l);
        l.join(&b'\n')
    };
    *b = match rng.below(13) {
        0 => {
            let mut out = b.clone();
            if !out.is_empty() {
                let i = rng.below(out.len() as u64) as usize;
                out[i] = rng.below(256) as u8;
            }
            out
        }
        1 => b[..at(rng, b)].to_vec(),
        2 => with_lines(&mut |l| {
            let copy = l[line].clone();
            l.insert(line, copy);
        }),
        3 => with_lines(&mut |l| {
            l.remove(line);
        }),
        4 | 5 => {
            let s = SNIPPETS[rng.below(SNIPPETS.len() as u64) as usize].as_bytes();
            let i = at(rng, b);
            [&b[..i], s, &b[i..]].concat()
        }
        6 => {
            // Deep nesting, flow or block, sometimes closed.
            let n = 1 + rng.below(100_000) as usize;
            let (open, close): (&[u8], &[u8]) = match rng.below(3) {
                0 => (b"[", b"]"),
                1 => (b"{a: ", b"}"),
                _ => (b"- ", b""),
            };
            let mut s = open.repeat(n);
            if rng.below(2) == 0 {
                s.extend(close.repeat(n));
            }
            let i = at(rng, b);
            [&b[..i], &s, &b[i..]].concat()
        }
        7 => {
            let n = rng.below(200_000) as usize;
            let i = at(rng, b);
            [&b[..i], &b"x".repeat(n), &b[i..]].concat()
        }
        8 => {
            // NUL, control characters, and bytes that are not UTF-8.
            const ODD: [u8; 8] = [0, 1, 7, 8, 0x1b, 0x7f, 0xc3, 0xff];
            let i = at(rng, b);
            [&b[..i], &[ODD[rng.below(ODD.len() as u64) as usize]], &b[i..]].concat()
        }
        9 => {
            // An anchor on a line's value, aliased from many other lines.
            with_lines(&mut |l| {
                if let Some(p) = l[line].windows(2).position(|w| w == b": ") {
                    l[line].splice(p + 2..p + 2, b"&z ".iter().copied());
                }
                for _ in 0..rng.below(50) {
                    let j = rng.below(l.len() as u64) as usize;
                    if let Some(p) = l[j].windows(2).position(|w| w == b": ") {
                        l[j].truncate(p + 2);
                        l[j].extend_from_slice(b"*z");
                    }
                }
            })
        }
        10 => with_lines(&mut |l| {
            let indent = rng.below(4) as usize;
            if rng.below(2) == 0 {
                l[line].splice(0..0, std::iter::repeat_n(b' ', indent));
            } else {
                let keep = l[line].len().min(indent);
                l[line].drain(..keep);
            }
        }),
        11 => with_lines(&mut |l| {
            let other = rng.below(l.len() as u64) as usize;
            l.swap(line, other);
        }),
        _ => {
            // Nested aliases, up to 10^6 nodes: past the budget of a short file, and
            // not so far that a loader without one takes the machine down.
            let (levels, width) = (1 + rng.below(6), 1 + rng.below(10) as usize);
            let mut s = format!("l0: &l0 [{}]\n", vec!["x"; width].join(", "));
            for i in 1..levels {
                s.push_str(&format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); width].join(", ")));
            }
            [b.as_slice(), b"\n", s.as_bytes()].concat()
        }
    };
}

/// Nodes and depth of a parsed tree, walked without recursion.
fn size(root: &yaml::Node) -> (usize, usize) {
    let (mut nodes, mut depth) = (0, 0);
    let mut todo = vec![(root, 1)];
    while let Some((n, d)) = todo.pop() {
        nodes += 1;
        depth = depth.max(d);
        match &n.kind {
            NodeKind::Seq(items) => todo.extend(items.iter().map(|i| (i, d + 1))),
            NodeKind::Map(pairs) => todo.extend(pairs.iter().flat_map(|(k, v)| [(k, d + 1), (v, d + 1)])),
            NodeKind::Null | NodeKind::Scalar { .. } => {}
        }
    }
    (nodes, depth)
}

/// Loads `src` and checks the loader's promises; a message on a broken one.
fn check(src: &str, catalog: &Catalog) -> Result<(), String> {
    let ((fleet, diags), peak) = heap::peak_during(|| load(src, catalog));
    if peak > heap_bound(src.len()) {
        return Err(format!("load peaked at {peak} bytes of heap for {} bytes of input", src.len()));
    }
    if fleet.is_none() && !diags.has_errors() {
        return Err("no fleet, and no error saying why".into());
    }
    if let Some(d) =
        diags.items.iter().find(|d| d.severity == Severity::Error && d.span.is_none_or(|s| s.start.line < 1))
    {
        return Err(format!("an error without a location: {d:?}"));
    }
    if let Ok(tree) = yaml::parse(src) {
        let (nodes, depth) = size(&tree);
        if nodes > yaml::node_budget(src.len()) || depth > MAX_DEPTH + 1 {
            return Err(format!("the tree has {nodes} nodes and {depth} levels"));
        }
    }
    Ok(())
}

#[test]
fn mutated_examples_never_panic_and_stay_within_their_budgets() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = env("FLEETWALL_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let (secs, max_cases) = match env("FLEETWALL_FUZZ_SECS") {
        Some(s) => (s, u64::MAX),
        None => (15, 4_000),
    };
    let replay = std::env::temp_dir().join(format!("fleetwall-fuzz-{seed}.yaml"));
    eprintln!(
        "fuzz: seed {seed} (FLEETWALL_FUZZ_SEED={seed} replays), up to {secs} s; the current case is in {}",
        replay.display()
    );
    let catalog = Catalog::builtin();
    let inputs = examples();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng::new(seed);
    let mut cases = 0u64;
    while cases < max_cases && Instant::now() < deadline {
        let mut bytes = pick(&mut rng, &inputs).clone().into_bytes();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut bytes);
        }
        let src = String::from_utf8_lossy(&bytes).into_owned();
        std::fs::write(&replay, &src).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&src, &catalog))).unwrap_or_else(|p| {
            let msg = p.downcast_ref::<String>().map(String::as_str).or(p.downcast_ref::<&str>().copied());
            Err(format!("panic: {}", msg.unwrap_or("(no message)")))
        });
        if let Err(why) = outcome {
            panic!("fuzz seed {seed}, case {cases}: {why}; the input is in {}", replay.display());
        }
        cases += 1;
    }
    std::fs::remove_file(&replay).unwrap();
    eprintln!("fuzz: seed {seed}: {cases} cases, no panic, every input within its budgets");
    assert!(cases > 0);
}
