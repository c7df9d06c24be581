//! The outputs of deployments (zones, subsystems, clusters) that are not node rulesets:
//! Kubernetes NetworkPolicy (`plan --format k8s`) and the documentation (`docs`).

use crate::commands::{load_valid, Outcome};
use crate::FleetArgs;
use anyhow::{bail, Context, Result};
use fleetwall_model::Fleet;
use std::path::Path;

/// `plan --format k8s`: the NetworkPolicy of every deployment with a namespace, on
/// standard output or as `<deployment>.k8s.yaml` in `out`; what the policies cannot
/// express and where the node firewall is stricter go to standard error.
pub fn k8s(fleet: &Fleet, node: Option<&str>, out: Option<&Path>) -> Result<Outcome> {
    if node.is_some() {
        bail!("--format k8s renders whole deployments: leave out --node");
    }
    let intent = fleetwall_compile::build_deployments(fleet, |d| d.namespace.is_some());
    let r = fleetwall_render::k8s::render(&fleet.deployments, &intent);
    if r.manifests.is_empty() {
        eprintln!(
            "fleetwall: no deployment names `kubernetes: {{ namespace: ... }}`: there is no NetworkPolicy to render"
        );
        return Ok(Outcome::Invalid);
    }
    let mut features: Vec<(String, usize, String)> = Vec::new();
    for u in &r.unsupported {
        match features.iter_mut().find(|(f, _, _)| *f == u.feature) {
            Some(f) => f.1 += 1,
            None => features.push((u.feature.clone(), 1, u.at.clone())),
        }
    }
    for (feature, n, first) in &features {
        eprintln!("note[k8s]: NetworkPolicy cannot express {feature}: {n} flows (e.g. {first}); the node firewall enforces them");
    }
    for w in &r.warnings {
        eprintln!("warning[k8s]: {w}");
    }
    match out {
        None => {
            for (_, text) in &r.manifests {
                print!("{text}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, text) in &r.manifests {
                let path = dir.join(format!("{name}.k8s.yaml"));
                std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            }
            eprintln!("wrote {} NetworkPolicy files to {}", r.manifests.len(), dir.display());
        }
    }
    Ok(Outcome::Ok)
}

/// `docs FLEET --out DIR`: the Markdown tables and the `.dot` diagrams, and each diagram
/// drawn as SVG with Graphviz `dot` (a loud error when it is missing).
pub fn docs(args: &FleetArgs, out: &Path) -> Result<Outcome> {
    let (_, fleet) = match load_valid(args)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let rows = fleetwall_compile::port_table(&fleet);
    let docs = fleetwall_render::docs::render(&fleet, &rows);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for d in &docs {
        let path = out.join(&d.name);
        std::fs::write(&path, &d.text).with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(stem) = d.name.strip_suffix(".dot") {
            let svg = out.join(format!("{stem}.svg"));
            let run = std::process::Command::new("dot")
                .arg("-Tsvg")
                .arg(&path)
                .arg("-o")
                .arg(&svg)
                .output()
                .context("cannot run Graphviz `dot` to draw the diagram (Debian: apt-get install graphviz)")?;
            if !run.status.success() {
                bail!("dot -Tsvg {} failed: {}", path.display(), String::from_utf8_lossy(&run.stderr));
            }
        }
    }
    let drawn = docs.iter().filter(|d| d.name.ends_with(".dot")).count();
    eprintln!("wrote {} documents and {drawn} SVG diagrams to {}", docs.len(), out.display());
    Ok(Outcome::Ok)
}
