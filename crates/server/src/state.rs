//! The compiled fleet and how a write changes it: incrementally.
//!
//! A write's operation says what it touched (`model::ops::Touched`). Only that part is
//! validated again — the platform, the touched projects with their VPCs, and the touched
//! services — with the fleet-wide constraints (unique node names and addresses) checked
//! against indexes of the rest; the fleet's tests are checked against the new fleet; only
//! the touched services' nodes are compiled and proven. Everything is shared with the
//! previous state (`Arc` projects and services, persistent maps), so a write costs what it
//! changes. A write that touches the platform or the tests recompiles everything, exactly
//! like a fleet loaded from the store. Both paths give the same state: a test compares
//! them after random sequences of writes.

use crate::{rejection, ruleset_hash, ApiError, Desired};
use fleetwall_model::doc::{FleetDoc, PathTable, ProjectDoc};
use fleetwall_model::ops::{Reach, Touched};
use fleetwall_model::validate::Elsewhere;
use fleetwall_model::{Catalog, Diagnostics, Fleet, Project, Service};
use imbl::{HashMap as PHashMap, OrdMap};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The compiled fleet at one revision.
#[derive(Clone, Default)]
pub struct State {
    /// The fleet document.
    pub doc: Arc<FleetDoc>,
    /// The validated fleet (None while the document is empty).
    pub fleet: Option<Arc<Fleet>>,
    /// Every node's desired ruleset, by node name.
    pub nodes: OrdMap<String, Desired>,
    /// Every node address, with its node.
    pub addresses: PHashMap<IpAddr, String>,
}

/// What a write changed among the nodes.
#[derive(Debug, Default)]
pub struct Changes {
    /// Nodes whose desired ruleset is new or different.
    pub changed: Vec<String>,
    /// Nodes that left the fleet.
    pub removed: Vec<String>,
    /// The node names the write could have touched, before and after (for identities).
    pub before: Vec<String>,
    /// See `before`.
    pub after: Vec<String>,
}

/// Whether `doc` holds nothing yet (a fresh store).
pub fn is_empty(doc: &FleetDoc) -> bool {
    doc.platform.is_none() && doc.projects.is_empty() && doc.deployments.is_empty()
}

/// Compiles `doc` whole. `since` gives a node's previous (hash, revision): an unchanged
/// ruleset keeps its revision. With `check`, runs the management proof and the fleet's
/// tests too (a write does; loading what the store already accepted does not).
pub fn full(
    doc: Arc<FleetDoc>,
    catalog: &Catalog,
    revision: i64,
    since: &dyn Fn(&str) -> Option<(String, i64)>,
    check: bool,
) -> Result<State, ApiError> {
    if is_empty(&doc) {
        return Ok(State { doc, ..State::default() });
    }
    let (fleet, diags) = fleetwall_model::validate_doc(&doc, catalog);
    let Some(fleet) = fleet else { return Err(rejection(&diags)) };
    let (rulesets, hashes, mut diags) = compile_parallel(&fleet, check)?;
    if diags.has_errors() {
        locate_checks(&doc, &mut diags);
        return Err(rejection(&diags));
    }
    let mut owner = HashMap::new();
    let mut addresses = PHashMap::new();
    for (p, s, n) in fleet.nodes() {
        owner.insert(n.name.as_str(), (p.name.as_str(), s.name.as_str()));
        for a in n.private.iter().chain(&n.public) {
            addresses.insert(*a, n.name.clone());
        }
    }
    let mut nodes = OrdMap::new();
    for (rs, hash) in rulesets.into_iter().zip(hashes) {
        let (p, s) = owner.get(rs.node.as_str()).copied().unwrap_or_default();
        let (name, d) = desired(rs, hash, p, s, revision, since);
        nodes.insert(name, d);
    }
    Ok(State { doc, fleet: Some(Arc::new(fleet)), nodes, addresses })
}

/// The test failures of `check_fleet` are located by the tests' spans, which index the
/// path table of the document they were validated from: building the tree again gives the
/// same table.
fn locate_checks(doc: &FleetDoc, diags: &mut Diagnostics) {
    let mut paths = PathTable::default();
    doc.to_node(&mut paths);
    paths.locate(diags);
}

/// Every node's ruleset, its hash (in the same order), and what checking them found.
type Compiled = (Vec<fleetwall_ir::NodeRuleset>, Vec<String>, Diagnostics);

/// Compiles every node of `fleet` on every core (a node's ruleset depends only on the
/// platform, its project and its service, so projects compile apart), each ruleset checked
/// publishable and hashed; in fleet order. With `check`, each part also runs the
/// management proof and the fleet tests that probe its nodes (`check_fleet`), whose
/// findings are returned.
fn compile_parallel(fleet: &Fleet, check: bool) -> Result<Compiled, ApiError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let per = fleet.projects.len().div_ceil(threads).max(1);
    // The deployments compile as a part of their own, next to the projects' parts.
    let part = |chunk: &[Arc<Project>], deployments: bool| -> Result<Compiled, ApiError> {
        let deployments = if deployments { fleet.deployments.clone() } else { Vec::new() };
        let mut part =
            Fleet { platform: fleet.platform.clone(), projects: chunk.to_vec(), tests: Vec::new(), deployments };
        let rulesets = fleetwall_compile::compile(&part);
        let hashes = rulesets.iter().map(publishable).collect::<Result<Vec<_>, _>>()?;
        let mut diags = Diagnostics::default();
        if check {
            let here: std::collections::HashSet<&str> = rulesets.iter().map(|r| r.node.as_str()).collect();
            part.tests = fleet.tests.iter().filter(|t| here.contains(t.to.as_str())).cloned().collect();
            fleetwall_verify::check::check_fleet(&part, &rulesets, &mut diags);
        }
        Ok((rulesets, hashes, diags))
    };
    let parts: Vec<Result<Compiled, ApiError>> = std::thread::scope(|scope| {
        let mut handles: Vec<_> =
            fleet.projects.chunks(per).map(|chunk| scope.spawn(move || part(chunk, false))).collect();
        if !fleet.deployments.is_empty() {
            handles.push(scope.spawn(move || part(&[], true)));
        }
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let (mut rulesets, mut hashes, mut diags) = (Vec::new(), Vec::new(), Diagnostics::default());
    for p in parts {
        let (r, h, d) = p?;
        rulesets.extend(r);
        hashes.extend(h);
        diags.items.extend(d.items);
    }
    diags.sort();
    Ok((rulesets, hashes, diags))
}

/// The hash of a ruleset fit to publish: agents refuse one that fails validation.
fn publishable(rs: &fleetwall_ir::NodeRuleset) -> Result<String, ApiError> {
    rs.validate().map_err(|e| {
        ApiError::bad(format!("Invalid fleet: node {} would get a ruleset its agent refuses: {e}", rs.node))
    })?;
    Ok(ruleset_hash(rs))
}

/// What node `rs.node` should enforce; an unchanged ruleset (by hash) keeps the revision
/// `since` gives it.
fn desired(
    rs: fleetwall_ir::NodeRuleset,
    hash: String,
    project: &str,
    service: &str,
    revision: i64,
    since: &dyn Fn(&str) -> Option<(String, i64)>,
) -> (String, Desired) {
    let rev = match since(&rs.node) {
        Some((h, r)) if h == hash => r,
        _ => revision,
    };
    let d = Desired { project: project.into(), service: service.into(), revision: rev, hash, ruleset: Arc::new(rs) };
    (d.ruleset.node.clone(), d)
}

/// The rest of the fleet, as validation of the touched part sees it.
struct Rest<'a> {
    cur: &'a State,
    touched: &'a Touched,
}

impl Rest<'_> {
    fn outside(&self, node: &str) -> Option<&Desired> {
        self.cur.nodes.get(node).filter(|d| !self.touched.covers(&d.project, &d.service))
    }
}

impl Elsewhere for Rest<'_> {
    fn node(&self, name: &str) -> Option<String> {
        self.outside(name).map(|d| format!("projects.{}.services.{}.nodes.{name}", d.project, d.service))
    }
    fn address(&self, ip: &IpAddr) -> Option<String> {
        let node = self.cur.addresses.get(ip)?;
        self.outside(node).map(|_| node.clone())
    }
}

fn find_service<'f>(fleet: &'f Fleet, p: &str, s: &str) -> Option<&'f Arc<Service>> {
    let proj = fleet.projects.binary_search_by(|x| x.name.as_str().cmp(p)).ok()?;
    let proj = &fleet.projects[proj];
    proj.services.binary_search_by(|x| x.name.as_str().cmp(s)).ok().map(|i| &proj.services[i])
}

/// Applies a write that touched `touched` of `cur`, giving the new state and what changed
/// among the nodes; `next` is `cur.doc` with the write applied.
pub fn apply(
    cur: &State,
    next: Arc<FleetDoc>,
    touched: &Touched,
    catalog: &Catalog,
    revision: i64,
) -> Result<(State, Changes), ApiError> {
    let Some(cur_fleet) = cur.fleet.as_ref().filter(|_| !touched.all && !is_empty(&next)) else {
        let since = |n: &str| cur.nodes.get(n).map(|d| (d.hash.clone(), d.revision));
        let state = full(next, catalog, revision, &since, true)?;
        let changes = diff_all(cur, &state);
        return Ok((state, changes));
    };
    // A BYOC project's bastions and an ECE project's proxy belong to the whole project:
    // a write to one of its services revalidates and recompiles all of it.
    let project_wide = |p: &str| next.projects.get(p).is_some_and(|d| d.byoc.is_some() || d.compliance.is_some());
    let whole;
    let touched = if touched.projects.iter().any(|(p, r)| matches!(r, Reach::Services(_)) && project_wide(p)) {
        let mut t = touched.clone();
        t.projects.iter_mut().filter(|(p, _)| project_wide(p)).for_each(|(_, r)| *r = Reach::Whole);
        whole = t;
        &whole
    } else {
        touched
    };
    // 1. The part to validate: the platform, the touched projects with their VPCs and the
    // touched services, and the fleet's tests (checked once the part is in the fleet).
    let mut part = FleetDoc { version: next.version, platform: next.platform.clone(), ..FleetDoc::default() };
    part.tests.clone_from(&next.tests);
    // Only for the tests' servers: the deployments are not revalidated by a part.
    part.deployments.clone_from(&next.deployments);
    for (p, reach) in &touched.projects {
        let Some(pd) = next.projects.get(p) else { continue };
        let services = match reach {
            Reach::Whole => pd.services.clone(),
            Reach::Services(set) => {
                set.iter().filter_map(|s| pd.services.get(s).map(|d| (s.clone(), d.clone()))).collect()
            }
        };
        part.projects.insert(p.clone(), Arc::new(ProjectDoc { services, ..(**pd).clone() }));
    }
    let mut paths = PathTable::default();
    let root = part.to_node(&mut paths);
    let mut diags = Diagnostics::default();
    let raw = fleetwall_model::raw::decode(&root, &mut diags);
    let rest = Rest { cur, touched };
    let validated = fleetwall_model::validate::validate_part(&raw, catalog, &paths, &rest, &mut diags);
    let Some((platform, part_projects)) = validated else {
        paths.locate(&mut diags);
        return Err(rejection(&diags));
    };
    // 2. The new fleet: the previous one with the touched projects and services replaced.
    // The projects stay sorted by name: a touched one is replaced, removed or inserted in place.
    let mut projects = cur_fleet.projects.clone();
    let mut fresh: Vec<Arc<Project>> = Vec::new();
    for (p, reach) in &touched.projects {
        let at = projects.binary_search_by(|x| x.name.as_str().cmp(p));
        let old = at.ok().map(|i| projects[i].clone());
        let Some(new) = part_projects.iter().find(|x| &x.name == p) else {
            if let Ok(i) = at {
                projects.remove(i);
            }
            continue;
        };
        let services = match (reach, old) {
            (Reach::Services(set), Some(old)) => {
                let mut s: Vec<Arc<Service>> =
                    old.services.iter().filter(|s| !set.contains(&s.name)).cloned().collect();
                s.extend(new.services.iter().cloned());
                s.sort_by(|a, b| a.name.cmp(&b.name));
                s
            }
            _ => new.services.clone(),
        };
        let project = Arc::new(Project { services, ..new.clone() });
        // What to compile: the touched services only.
        let compile = Project { services: new.services.clone(), ..new.clone() };
        fresh.push(Arc::new(compile));
        match at {
            Ok(i) => projects[i] = project,
            Err(i) => projects.insert(i, project),
        }
    }
    let mut fleet = Fleet { platform, projects, tests: Vec::new(), deployments: cur_fleet.deployments.clone() };
    // 3. The tests, against the new fleet.
    let touched_nodes: HashMap<&str, &Service> = fresh
        .iter()
        .flat_map(|p| &p.services)
        .flat_map(|s| s.nodes.iter().map(move |n| (n.name.as_str(), &**s)))
        .collect();
    let tests = {
        let find = |n: &str| -> Option<&Service> {
            if let Some(s) = touched_nodes.get(n) {
                return Some(*s);
            }
            let d = rest.outside(n)?;
            find_service(&fleet, &d.project, &d.service).map(|s| &**s)
        };
        let names = || fleet.nodes().map(|(_, _, n)| n.name.clone()).collect();
        fleetwall_model::validate::validate_tests(&raw, catalog, &paths, &find, &names, &mut diags)
    };
    let Some(tests) = tests else {
        paths.locate(&mut diags);
        return Err(rejection(&diags));
    };
    // 4. Compile and prove the touched services' nodes; run the tests that probe them.
    let probed: Vec<_> = tests.iter().filter(|t| touched_nodes.contains_key(t.to.as_str())).cloned().collect();
    let compile = Fleet { platform: fleet.platform.clone(), projects: fresh, tests: probed, deployments: Vec::new() };
    let rulesets = fleetwall_compile::compile(&compile);
    let mut checks = Diagnostics::default();
    fleetwall_verify::check::check_fleet(&compile, &rulesets, &mut checks);
    if checks.has_errors() {
        paths.locate(&mut checks);
        return Err(rejection(&checks));
    }
    fleet.tests = tests;
    // 5. The node and address indexes.
    let mut nodes = cur.nodes.clone();
    let mut addresses = cur.addresses.clone();
    let mut changes = Changes::default();
    for p in &cur_fleet.projects {
        if !touched.projects.contains_key(&p.name) {
            continue;
        }
        for s in p.services.iter().filter(|s| touched.covers(&p.name, &s.name)) {
            for n in &s.nodes {
                changes.before.push(n.name.clone());
                nodes.remove(&n.name);
                for a in n.private.iter().chain(&n.public) {
                    addresses.remove(a);
                }
            }
        }
    }
    for (_, _, n) in compile.nodes() {
        changes.after.push(n.name.clone());
        for a in n.private.iter().chain(&n.public) {
            addresses.insert(*a, n.name.clone());
        }
    }
    let owner: HashMap<&str, (&str, &str)> =
        compile.nodes().map(|(p, s, n)| (n.name.as_str(), (p.name.as_str(), s.name.as_str()))).collect();
    let since = |n: &str| cur.nodes.get(n).map(|d| (d.hash.clone(), d.revision));
    for rs in rulesets {
        let (p, s) = owner.get(rs.node.as_str()).copied().unwrap_or_default();
        let hash = publishable(&rs)?;
        let (name, d) = desired(rs, hash, p, s, revision, &since);
        if d.revision == revision {
            changes.changed.push(name.clone());
        }
        nodes.insert(name, d);
    }
    changes.removed = changes.before.iter().filter(|n| !nodes.contains_key(*n)).cloned().collect();
    Ok((State { doc: next, fleet: Some(Arc::new(fleet)), nodes, addresses }, changes))
}

/// What changed between two whole states.
fn diff_all(cur: &State, new: &State) -> Changes {
    Changes {
        changed: new
            .nodes
            .iter()
            .filter(|(n, d)| cur.nodes.get(*n).map(|o| &o.hash) != Some(&d.hash))
            .map(|(n, _)| n.clone())
            .collect(),
        removed: cur.nodes.keys().filter(|n| !new.nodes.contains_key(*n)).cloned().collect(),
        before: cur.nodes.keys().cloned().collect(),
        after: new.nodes.keys().cloned().collect(),
    }
}
