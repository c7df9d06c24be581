//! The fleet commands: check, ports, plan.

use crate::{table, CheckFormat, FleetArgs, LabBackend, PlanFormat, TableFormat};
use anyhow::{bail, Context, Result};
use fleetwall_model::diag::{render_human, render_human_with, DiagnosticJson};
use fleetwall_model::{Catalog, Diagnostics, Fleet};
use fleetwall_render::{backend, summary, Artifact};
use std::path::Path;

/// How a command ended, when it did not fail for environmental reasons.
pub enum Outcome {
    /// Success: exit 0.
    Ok,
    /// Invalid input: exit 1.
    Invalid,
}

/// The fleet file's text, its catalog, the validated fleet (if valid) and the diagnostics.
pub struct Loaded {
    pub name: String,
    pub src: String,
    pub fleet: Option<Fleet>,
    pub diags: Diagnostics,
}

pub fn catalog(path: Option<&Path>) -> Result<Catalog> {
    let Some(path) = path else { return Ok(Catalog::builtin()) };
    let src = std::fs::read_to_string(path).with_context(|| format!("cannot read catalog {}", path.display()))?;
    let mut diags = Diagnostics::default();
    match Catalog::parse(&src, &mut diags) {
        Some(c) => Ok(c),
        None => {
            eprint!("{}", render_human(&diags.items, &path.display().to_string(), &src));
            bail!("the catalog {} is not valid", path.display())
        }
    }
}

/// `catalog` with the deployment kinds of the file at `path`, when one is given.
pub fn with_deployments(catalog: Catalog, path: Option<&Path>) -> Result<Catalog> {
    let Some(path) = path else { return Ok(catalog) };
    let src =
        std::fs::read_to_string(path).with_context(|| format!("cannot read deployment catalog {}", path.display()))?;
    let mut diags = Diagnostics::default();
    match catalog.with_deployments(&src, &mut diags) {
        Some(c) => Ok(c),
        None => {
            eprint!("{}", render_human(&diags.items, &path.display().to_string(), &src));
            bail!("the deployment catalog {} is not valid", path.display())
        }
    }
}

pub fn load(args: &FleetArgs) -> Result<Loaded> {
    let catalog = with_deployments(catalog(args.catalog.as_deref())?, args.deployment_catalog.as_deref())?;
    // `-` is standard input (`fleetwall fleet get | fleetwall check -`).
    let (name, src) = if args.fleet.as_os_str() == "-" {
        let mut src = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut src).context("cannot read the fleet from stdin")?;
        ("<stdin>".to_string(), src)
    } else {
        let name = args.fleet.display().to_string();
        let src = std::fs::read_to_string(&args.fleet).with_context(|| format!("cannot read fleet file {name}"))?;
        (name, src)
    };
    let (fleet, diags) = fleetwall_model::load(&src, &catalog);
    Ok(Loaded { name, src, fleet, diags })
}

/// Loads a fleet for a command that needs a valid one: diagnostics go to stderr.
pub fn load_valid(args: &FleetArgs) -> Result<std::result::Result<(Loaded, Fleet), Outcome>> {
    load_valid_for(args, None)
}

/// `load_valid` for a command about one node (`plan --node N`): of the warnings, only
/// those about the node's service, its project and the platform are printed, and a
/// count of the others.
pub fn load_valid_for(args: &FleetArgs, node: Option<&str>) -> Result<std::result::Result<(Loaded, Fleet), Outcome>> {
    let mut l = load(args)?;
    if !l.diags.items.is_empty() {
        eprint!("{}", render_diagnostics(&l, args, node));
    }
    if args.deny_warnings && l.diags.warnings() > 0 {
        eprintln!("{}: {} warning(s), refused by --deny-warnings", l.name, l.diags.warnings());
        return Ok(Err(Outcome::Invalid));
    }
    match l.fleet.take() {
        Some(f) => Ok(Ok((l, f))),
        None => {
            eprintln!("{}: {}; run `fleetwall check {}`", l.name, errors(l.diags.errors()), l.name);
            Ok(Err(Outcome::Invalid))
        }
    }
}

/// The diagnostics as text. With a node (and without `--all-warnings`), the warnings
/// about other nodes are counted, not shown; errors are always shown.
fn render_diagnostics(l: &Loaded, args: &FleetArgs, node: Option<&str>) -> String {
    let node = node.filter(|_| !args.all_warnings);
    let Some(node) = node else { return render_human_with(&l.diags.items, &l.name, &l.src, args.show()) };
    let scopes = fleetwall_model::scope::Scopes::of(&l.src);
    let (own, others): (Vec<_>, Vec<_>) = l
        .diags
        .items
        .iter()
        .cloned()
        .partition(|d| d.severity == fleetwall_model::Severity::Error || scopes.concerns_node(d, node));
    let mut out = render_human_with(&own, &l.name, &l.src, args.show());
    if !others.is_empty() && !args.quiet {
        let what = if others.len() == 1 { "warning" } else { "warnings" };
        out.push_str(&format!(
            "... and {} {what} about other nodes than {node} (`--all-warnings` lists them)\n\n",
            thousands(others.len())
        ));
    }
    out
}

/// `n` with a comma between groups of three digits: 98,989.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Counts for the one-line summary.
#[derive(serde::Serialize)]
pub struct Counts {
    pub projects: usize,
    pub vpcs: usize,
    pub services: usize,
    pub nodes: usize,
    pub listeners: usize,
    /// Servers of deployments (zones, subsystems, clusters); left out when there are none.
    #[serde(skip_serializing_if = "is_zero")]
    pub servers: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub fn counts(f: &Fleet) -> Counts {
    Counts {
        projects: f.projects.len(),
        vpcs: f.projects.iter().map(|p| p.vpcs.len()).sum(),
        services: f.services().count(),
        nodes: f.nodes().count(),
        listeners: f.nodes().map(|(p, s, n)| fleetwall_compile::node_listeners(f, p, s, n).len()).sum(),
        servers: f.servers().count(),
    }
}

pub fn check(args: &FleetArgs, format: CheckFormat, node: Option<&str>) -> Result<Outcome> {
    let mut l = load(args)?;
    if let Some(n) = node {
        let scopes = fleetwall_model::scope::Scopes::of(&l.src);
        // A deployment's server: every warning concerns it (scopes know services only).
        let server = l.fleet.as_ref().is_some_and(|f| f.servers().any(|(_, _, s)| s.name == n));
        if scopes.node(n).is_none() && !server {
            let names = scopes.node_names();
            return report_unknown_node(n, &names);
        }
    }
    let proven = l.fleet.as_ref().map(|f| crate::verify::check_fleet(f, &mut l.diags));
    if l.diags.has_errors() {
        l.fleet = None;
    }
    let counts = l.fleet.as_ref().map(counts);
    match format {
        CheckFormat::Json => {
            let diags: Vec<DiagnosticJson> = l.diags.items.iter().map(|d| DiagnosticJson::new(d, &l.name)).collect();
            let doc = serde_json::json!({
                "file": l.name,
                "valid": l.fleet.is_some(),
                "errors": l.diags.errors(),
                "warnings": l.diags.warnings(),
                "diagnostics": diags,
                "summary": counts,
                "management_proven_nodes": proven.map(|p| p.0),
                "tests_passed": proven.map(|p| p.1),
                "tests": proven.map(|p| p.2),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        CheckFormat::Text => {
            print!("{}", render_diagnostics(&l, args, node));
            let warn = match l.diags.warnings() {
                0 => String::new(),
                1 => ", 1 warning".into(),
                n => format!(", {n} warnings"),
            };
            match &counts {
                Some(c) => {
                    let (proven, passed, tests) = proven.unwrap_or_default();
                    let servers = match l.fleet.as_ref().map_or(0, |f| f.deployments.len()) {
                        0 => String::new(),
                        d => format!(", {d} deployments with {} servers", c.servers),
                    };
                    println!(
                        "{}: ok: {} projects, {} VPCs, {} services, {} nodes, {} listeners{servers}; management access proven on {proven} nodes; {passed}/{tests} tests pass{warn}",
                        l.name, c.projects, c.vpcs, c.services, c.nodes, c.listeners
                    )
                }
                None => println!("{}: {}{warn}", l.name, errors(l.diags.errors())),
            }
        }
    }
    let denied = args.deny_warnings && l.diags.warnings() > 0;
    Ok(if l.fleet.is_some() && !denied { Outcome::Ok } else { Outcome::Invalid })
}

pub fn ports(args: &FleetArgs, format: TableFormat, node: Option<&str>) -> Result<Outcome> {
    let (_, fleet) = match load_valid(args)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let mut rows = fleetwall_compile::port_table(&fleet);
    if let Some(n) = node {
        if fleet.servers().any(|(_, _, s)| s.name == n) {
            eprintln!(
                "fleetwall: {n} is a server of a deployment: it has no allocated listeners; its ports are its flows (`fleetwall plan --node {n}`, `fleetwall docs`)"
            );
            return Ok(Outcome::Invalid);
        }
        if fleet.nodes().all(|(_, _, x)| x.name != n) {
            return unknown_node(&fleet, n);
        }
        rows.retain(|r| r.node == n);
    }
    match format {
        TableFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        TableFormat::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.project.clone(),
                        r.service.clone(),
                        r.node.clone(),
                        r.component.clone(),
                        r.route.as_str().into(),
                        r.address.to_string(),
                        r.port.to_string(),
                        r.protocol.as_str().into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &["PROJECT", "SERVICE", "NODE", "COMPONENT", "ROUTE", "ADDRESS", "PORT", "PROTOCOL"],
                    &cells
                )
            );
        }
    }
    Ok(Outcome::Ok)
}

fn unknown_node(fleet: &Fleet, n: &str) -> Result<Outcome> {
    let names: Vec<&str> = fleet
        .nodes()
        .map(|(_, _, x)| x.name.as_str())
        .chain(fleet.servers().map(|(_, _, s)| s.name.as_str()))
        .collect();
    report_unknown_node(n, &names)
}

fn report_unknown_node(n: &str, names: &[&str]) -> Result<Outcome> {
    let hint = match fleetwall_model::diag::did_you_mean(n, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("nodes: {}", names.join(", ")),
    };
    eprintln!("fleetwall: no node `{n}` in the fleet ({hint})");
    Ok(Outcome::Invalid)
}

/// The artifacts of one format for one ruleset.
pub fn artifacts(rs: &fleetwall_ir::NodeRuleset, format: PlanFormat) -> Vec<Artifact> {
    let pick = |name: &str, suffix: &str| -> Vec<Artifact> {
        backend(name).expect("known backend").render(rs).into_iter().filter(|a| a.suffix == suffix).collect()
    };
    match format {
        PlanFormat::Summary => vec![Artifact { suffix: "txt", text: summary::render(rs) }],
        PlanFormat::Nft => pick("nft", "nft"),
        PlanFormat::Iptables => pick("iptables", "ipt4"),
        PlanFormat::Ip6tables => pick("iptables", "ipt6"),
        PlanFormat::Ipset => pick("iptables", "ipset"),
        PlanFormat::Json => pick("json", "json"),
        // Rendered per deployment, not per node (`deploy::k8s`).
        PlanFormat::K8s => Vec::new(),
        PlanFormat::Aws | PlanFormat::Gcp | PlanFormat::Azure | PlanFormat::Dante | PlanFormat::Sdn => {
            unreachable!("plan renders the group formats itself")
        }
    }
}

pub fn plan(args: &FleetArgs, node: Option<&str>, format: Option<PlanFormat>, out: Option<&Path>) -> Result<Outcome> {
    let cloud = match format {
        Some(PlanFormat::Aws) => Some(crate::cloud_plan::Cloud::Aws),
        Some(PlanFormat::Gcp) => Some(crate::cloud_plan::Cloud::Gcp),
        Some(PlanFormat::Azure) => Some(crate::cloud_plan::Cloud::Azure),
        _ => None,
    };
    if let Some(c) = cloud {
        return crate::cloud_plan::plan(args, node, c, out);
    }
    if format == Some(PlanFormat::Dante) {
        return crate::cloud_plan::dante(args, node, out);
    }
    if format == Some(PlanFormat::Sdn) {
        return crate::cloud_plan::sdn(args, node, out);
    }
    let (_, fleet) = match load_valid_for(args, node)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    if format == Some(PlanFormat::K8s) {
        return crate::deploy::k8s(&fleet, node, out);
    }
    let rulesets = match node {
        Some(n) => match fleetwall_compile::compile_node(&fleet, n) {
            Some(rs) => vec![rs],
            None => return unknown_node(&fleet, n),
        },
        None => fleetwall_compile::compile(&fleet),
    };
    // The central capability check: nothing is rendered for a target that cannot express it.
    let targets: &[&str] = match (format, out.is_some()) {
        (None, true) => &["nft", "iptables", "json"],
        (Some(PlanFormat::Nft), _) => &["nft"],
        (None, false) if node.is_some() => &["nft"],
        (Some(PlanFormat::Iptables | PlanFormat::Ip6tables | PlanFormat::Ipset), _) => &["iptables"],
        (Some(PlanFormat::Json), _) => &["json"],
        _ => &[],
    };
    let unsupported: Vec<_> = targets
        .iter()
        .map(|t| backend(t).expect("known backend"))
        .flat_map(|b| rulesets.iter().flat_map(move |rs| fleetwall_render::check(b.name(), &b.capabilities(), rs)))
        .collect();
    if !unsupported.is_empty() {
        for u in unsupported.iter().take(20) {
            eprintln!("error[unsupported]: {u}");
        }
        if unsupported.len() > 20 {
            eprintln!("... and {} more", unsupported.len() - 20);
        }
        eprintln!("fleetwall: nothing rendered: the target cannot express this fleet (choose another --format)");
        return Ok(Outcome::Invalid);
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = 0;
        for rs in &rulesets {
            // Without --format: every backend's files, each backend rendered once.
            let all: Vec<Artifact> = match format {
                Some(f) => artifacts(rs, f),
                None => ["nft", "iptables", "json"]
                    .iter()
                    .flat_map(|b| backend(b).expect("known backend").render(rs))
                    .collect(),
            };
            for a in all {
                let path = dir.join(format!("{}.{}", rs.node, a.suffix));
                std::fs::write(&path, a.text).with_context(|| format!("cannot write {}", path.display()))?;
                files += 1;
            }
        }
        eprintln!("wrote {files} files for {} node(s) to {}", rulesets.len(), dir.display());
        return Ok(Outcome::Ok);
    }
    let format = format.unwrap_or(if node.is_some() { PlanFormat::Nft } else { PlanFormat::Summary });
    if format == PlanFormat::Json && node.is_none() {
        // One JSON document for the whole fleet, not one per node back to back.
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "nodes": rulesets }))?);
        return Ok(Outcome::Ok);
    }
    let mut stdout = String::new();
    for (i, rs) in rulesets.iter().enumerate() {
        if i > 0 {
            stdout.push('\n');
        }
        for a in artifacts(rs, format) {
            stdout.push_str(&a.text);
        }
    }
    print!("{stdout}");
    Ok(Outcome::Ok)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().nth(1) == Some("0"))))
        .unwrap_or(false)
}

pub fn lab(args: &FleetArgs, backend: LabBackend, format: CheckFormat) -> Result<Outcome> {
    use std::io::IsTerminal;
    if !is_root() {
        bail!(
            "`fleetwall lab` creates network namespaces and needs root (it never touches the machine's own namespace)"
        );
    }
    let (_, fleet) = match load_valid(args)? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let prefix = fleetwall_lab::netns::run_prefix();
    fleetwall_lab::netns::cleanup_on_signal(prefix.clone());
    let backend = match backend {
        LabBackend::Nft => fleetwall_lab::Backend::Nft,
        LabBackend::Iptables => fleetwall_lab::Backend::Iptables,
    };
    let tty = std::io::stderr().is_terminal();
    let step = std::sync::atomic::AtomicUsize::new(0);
    eprintln!("lab: building {} nodes in namespaces {prefix}* ...", fleet.nodes().count());
    let progress = |done: usize, total: usize| {
        if tty {
            eprint!("\rlab: probing {done}/{total}");
        } else if done * 10 / total > step.load(std::sync::atomic::Ordering::Relaxed) {
            step.store(done * 10 / total, std::sync::atomic::Ordering::Relaxed);
            eprintln!("lab: probing {done}/{total}");
        }
    };
    let report = match fleetwall_lab::run(&fleet, backend, &prefix, &progress) {
        Ok(r) => r,
        // Interrupted: the namespaces went away under the lab; the cleanup exits 130.
        Err(_) if fleetwall_lab::netns::interrupted() => loop {
            std::thread::park();
        },
        Err(e) => bail!("lab: {e}"),
    };
    if tty {
        eprintln!();
    }
    match format {
        CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        CheckFormat::Text => print!("{}", fleetwall_lab::report::render(&report)),
    }
    Ok(if report.mismatches().next().is_none() { Outcome::Ok } else { Outcome::Invalid })
}

/// "1 error", "3 errors".
pub fn errors(n: usize) -> String {
    if n == 1 {
        "1 error".into()
    } else {
        format!("{n} errors")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped_by_commas() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(98_989), "98,989");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
