//! A write revalidates and recompiles only what it touched; the result must be what a
//! full recompile of the same document gives. Random sequences of writes (valid and
//! invalid) on a synthetic fleet, each checked against `state::full`.

use fleetwall_model::doc::{ConnectionDoc, FleetDoc, IpFilterDoc, NodeDoc, PeeringDoc, ServiceDoc};
use fleetwall_model::edit::Edit;
use fleetwall_model::ops::Op;
use fleetwall_model::Catalog;
use fleetwall_server::state::{self, State};
use fleetwall_synth::{Rng, Spec};
use std::sync::Arc;

fn start(catalog: &Catalog) -> State {
    let spec = Spec { services: 12, services_per_project: 3, ..Spec::fleet(60, 3) };
    let text = fleetwall_synth::generate(&spec);
    let doc = fleetwall_server::fleet_file(&text, catalog).expect("the synthetic fleet is valid");
    state::full(Arc::new(doc), catalog, 1, &|_| None, true).unwrap_or_else(|e| panic!("{e}"))
}

fn pick<'a>(r: &mut Rng, items: &'a [String]) -> &'a String {
    &items[r.below(items.len() as u64) as usize]
}

/// A random operation on `doc`: sometimes one validation must refuse (a taken address or
/// node name, a bad CIDR), sometimes one that is fine.
fn random_op(r: &mut Rng, doc: &FleetDoc, n: u32) -> Op {
    let projects: Vec<String> = doc.projects.keys().cloned().collect();
    let p = pick(r, &projects).clone();
    let services: Vec<String> = doc.projects[&p].services.keys().cloned().collect();
    if services.is_empty() {
        return Op::DeleteProject(p);
    }
    let s = pick(r, &services).clone();
    let svc = doc.service(&p, &s).expect("picked");
    let nodes: Vec<String> = svc.nodes.keys().cloned().collect();
    let all_nodes: Vec<String> =
        doc.projects.values().flat_map(|pd| pd.services.values()).flat_map(|sd| sd.nodes.keys().cloned()).collect();
    let taken: Vec<String> = doc
        .projects
        .values()
        .flat_map(|pd| pd.services.values())
        .flat_map(|sd| sd.nodes.values())
        .flat_map(|nd| nd.public.iter().cloned())
        .collect();
    let fresh_public = format!("100.96.{}.{}", n / 200, n % 200 + 1);
    let private = svc.vpc.as_ref().map(|_| {
        let vpc = &doc.projects[&p].vpcs.values().next().expect("a VPC").network_cidr;
        let net: ipnet::Ipv4Net = vpc.as_deref().unwrap().parse().unwrap();
        format!("{}", std::net::Ipv4Addr::from(u32::from(net.network()) + 500 + n))
    });
    // Any service of the fleet with a private link, for the connection writes.
    let mut links: Vec<(String, String, String, Vec<String>)> = Vec::new();
    for (pn, pd) in &doc.projects {
        for (sn, sd) in &pd.services {
            for (k, l) in &sd.privatelink {
                links.push((pn.clone(), sn.clone(), k.clone(), l.connections.keys().cloned().collect()));
            }
        }
    }
    let link = (!links.is_empty()).then(|| links[r.below(links.len() as u64) as usize].clone());
    match r.below(12) {
        // A connection with a port of the pool that may collide with another's.
        10 => match link {
            Some((lp, ls, provider, _)) => {
                let kafka = doc.service(&lp, &ls).and_then(|sd| sd.service_type.as_deref()) == Some("kafka");
                let c = ConnectionDoc {
                    host: Some(format!("privatelink-{n}-{ls}-{lp}")),
                    state: Some(["pending-user-approval", "user-approved", "active"][r.below(3) as usize].into()),
                    ports: match kafka {
                        true => [("kafka".to_string(), 10000 + r.below(4) as i64)].into(),
                        false => Default::default(),
                    },
                    ..ConnectionDoc::default()
                };
                Op::SetConnection(lp, ls, provider, format!("plc-{}", r.below(6)), c)
            }
            // The link first (refused outside AWS or a VPC).
            None => Op::SetPrivatelink {
                project: p,
                service: s,
                provider: "aws".into(),
                principals: vec!["arn:aws:iam::012345678901:root".into()],
                create: true,
            },
        },
        11 => match link {
            Some((lp, ls, provider, ids)) if !ids.is_empty() => {
                Op::DeleteConnection(lp, ls, provider, pick(r, &ids).clone())
            }
            _ => Op::EditUserConfig(p, s, vec![Edit::Remove("ip_filter".into())]),
        },
        0 | 1 => {
            let list = (0..r.below(4)).map(|i| format!("192.0.{}.0/24", (n + i as u32) % 250)).collect::<Vec<_>>();
            Op::EditUserConfig(p, s, vec![Edit::Set("ip_filter".into(), list.join(","))])
        }
        2 => Op::EditUserConfig(p, s, vec![Edit::Set("ip_filter".into(), "10.0.0.1/8".into())]),
        3 => Op::AddNode(
            p,
            s,
            format!("extra-{n}"),
            NodeDoc { private: private.into_iter().collect(), public: vec![fresh_public] },
        ),
        // Someone else's address, or someone else's name.
        4 => Op::AddNode(p, s, format!("dup-{n}"), NodeDoc { private: vec![], public: vec![pick(r, &taken).clone()] }),
        5 => Op::AddNode(
            p,
            s,
            pick(r, &all_nodes).clone(),
            NodeDoc { private: private.into_iter().collect(), public: vec![fresh_public] },
        ),
        6 if nodes.len() > 1 => Op::RemoveNode(p, s, pick(r, &nodes).clone()),
        6 => Op::DeleteService(p, s),
        7 => {
            let mut sd: ServiceDoc = svc.clone();
            sd.nodes =
                [(format!("new-{n}"), NodeDoc { private: private.into_iter().collect(), public: vec![fresh_public] })]
                    .into();
            sd.ports.clear();
            sd.user_config.ip_filter = Some(vec![IpFilterDoc::Network(format!("198.18.{}.0/24", n % 250))]);
            Op::CreateService(p, format!("svc-new-{n}"), sd)
        }
        8 => match doc.projects[&p].vpcs.keys().next() {
            Some(v) => Op::CreatePeering(
                p,
                v.clone(),
                PeeringDoc {
                    peer_vpc: Some(format!("vpc-x{n}")),
                    peer_cidrs: vec![format!("172.20.{}.0/24", n % 250)],
                },
            ),
            None => Op::DeleteService(p, s),
        },
        _ => match doc.projects[&p].vpcs.iter().next() {
            Some((v, vd)) if !vd.peerings.is_empty() => {
                Op::DeletePeering(p, v.clone(), vd.peerings[0].peer_vpc.clone().unwrap_or_default())
            }
            _ => Op::EditUserConfig(p, s, vec![Edit::Remove("ip_filter".into())]),
        },
    }
}

fn hashes(st: &State) -> Vec<(String, String, String, String)> {
    st.nodes.iter().map(|(n, d)| (n.clone(), d.hash.clone(), d.project.clone(), d.service.clone())).collect()
}

#[test]
fn incremental_writes_equal_a_full_recompile_after_random_sequences() {
    let catalog = Catalog::builtin();
    let (mut accepted, mut refused, mut connections) = (0, 0, 0);
    for seed in 1..=4u64 {
        let mut r = Rng::new(seed);
        let mut cur = start(&catalog);
        for n in 0..60u32 {
            let op = random_op(&mut r, &cur.doc, n + 1000 * seed as u32);
            let mut next = (*cur.doc).clone();
            let Ok(touched) = op.apply(&mut next) else { continue };
            let next = Arc::new(next);
            let rev = i64::from(n) + 2;
            let incremental = state::apply(&cur, next.clone(), &touched, &catalog, rev);
            let since = |name: &str| cur.nodes.get(name).map(|d| (d.hash.clone(), d.revision));
            let full = state::full(next, &catalog, rev, &since, true);
            match (incremental, full) {
                (Ok((inc, changes)), Ok(full)) => {
                    accepted += 1;
                    connections += usize::from(matches!(op, Op::SetConnection(..) | Op::DeleteConnection(..)));
                    assert_eq!(hashes(&inc), hashes(&full), "seed {seed} write {n}: {op:?}");
                    let revs = |s: &State| s.nodes.iter().map(|(k, d)| (k.clone(), d.revision)).collect::<Vec<_>>();
                    assert_eq!(revs(&inc), revs(&full), "seed {seed} write {n}: node revisions");
                    let mut addrs: Vec<_> = inc.addresses.iter().map(|(a, n)| (*a, n.clone())).collect();
                    let mut want: Vec<_> = full.addresses.iter().map(|(a, n)| (*a, n.clone())).collect();
                    addrs.sort();
                    want.sort();
                    assert_eq!(addrs, want, "seed {seed} write {n}: the address index");
                    let inc_fleet = inc.fleet.as_ref().unwrap();
                    let full_fleet = full.fleet.as_ref().unwrap();
                    assert_eq!(format!("{:?}", inc_fleet.projects), format!("{:?}", full_fleet.projects));
                    for c in &changes.changed {
                        assert_eq!(full.nodes[c].revision, rev, "{c} reported changed");
                    }
                    cur = inc;
                }
                (Err(a), Err(b)) => {
                    refused += 1;
                    assert_eq!(a.status, b.status, "seed {seed} write {n}: {op:?}: {a} / {b}");
                }
                (a, b) => panic!(
                    "seed {seed} write {n}: {op:?}: incremental {:?}, full {:?}",
                    a.map(|_| ()).map_err(|e| e.message),
                    b.map(|_| ()).map_err(|e| e.message)
                ),
            }
        }
    }
    assert!(connections > 5, "private-link connections were written: {connections}");
    assert!(
        accepted > 100 && refused > 20,
        "both kinds of write were exercised: {accepted} accepted, {refused} refused"
    );
}
