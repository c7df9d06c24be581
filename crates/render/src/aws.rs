//! AWS security groups from the cloud layer: the EC2 API requests that create them
//! (`CreateManagedPrefixList`, `CreateSecurityGroup`, `RevokeSecurityGroupEgress`,
//! `AuthorizeSecurityGroupIngress`/`Egress`) and the same as a CloudFormation template.
//!
//! Each service gets one security group, attached to its nodes' interfaces; its own nodes
//! are one self-referencing rule. A peer of more than [`INLINE_NETWORKS`] networks (a big
//! ip_filter) becomes a managed prefix list, referenced by every rule that uses it. AWS
//! counts a prefix list reference as its maximum entries against the group's rule quota,
//! so a service whose rules outgrow one group is spread over several (up to the
//! interface's quota of groups), each prefix list holding at most one group's worth.
//! What still does not fit is an error naming the service, the count and the quota.
//!
//! Request bodies refer to objects created by earlier requests as `{ref:NAME}` and to
//! the fleet's VPCs as `{vpc:NAME}`: the caller substitutes the ids AWS returns.

use crate::cloud::{self, CloudError, CloudGroup, CloudPeer, CloudRule, Limit, Proto};
use fleetwall_intent::Intent;
use fleetwall_ir::{Direction, Family};
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Rules per direction of one security group (AWS default quota, adjustable).
pub const RULES_PER_GROUP: Limit =
    Limit { what: "inbound or outbound rules per security group", max: 60, source: "AWS default quota, adjustable" };
/// Security groups per network interface (AWS default quota, adjustable up to 16).
pub const GROUPS_PER_INTERFACE: Limit =
    Limit { what: "security groups per network interface", max: 5, source: "AWS default quota, adjustable to 16" };
/// Entries of one managed prefix list.
pub const PREFIX_LIST_ENTRIES: Limit =
    Limit { what: "entries per customer-managed prefix list", max: 1000, source: "AWS quota" };
/// Resources of one CloudFormation template.
pub const TEMPLATE_RESOURCES: Limit =
    Limit { what: "resources per CloudFormation template", max: 500, source: "AWS CloudFormation limit" };

/// Up to this many networks a rule lists inline; more become a managed prefix list.
pub const INLINE_NETWORKS: usize = 10;

/// The characters EC2 takes in names and descriptions, besides letters, digits and space.
const EC2_TEXT: &str = "._-:/()#,@[]+=&;{}!$*";

/// What the security groups are made of, before they are written as requests or a template.
struct Plan {
    prefix_lists: Vec<PrefixList>,
    groups: Vec<Group>,
}

struct PrefixList {
    name: String,
    family: Family,
    entries: Vec<IpNet>,
    reason: String,
}

struct Group {
    name: String,
    service: String,
    vpc: Option<String>,
    description: String,
    inbound: Vec<Permission>,
    outbound: Vec<Permission>,
    /// The outbound rules allow everything: AWS's default egress rule stays.
    default_egress: bool,
}

/// One rule entry as AWS counts it: a protocol and port range with one source.
struct Permission {
    proto: Proto,
    family: Family,
    ports: Option<(u16, u16)>,
    source: Source,
    description: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Cidr(IpNet),
    PrefixList(usize),
    OwnGroup,
}

fn weight(p: &Permission, lists: &[PrefixList]) -> usize {
    match p.source {
        Source::PrefixList(i) => lists[i].entries.len(),
        _ => 1,
    }
}

fn build(groups: &[CloudGroup]) -> Result<Plan, Vec<CloudError>> {
    let mut plan = Plan { prefix_lists: Vec::new(), groups: Vec::new() };
    let mut errors = Vec::new();
    let chunk = RULES_PER_GROUP.max.min(PREFIX_LIST_ENTRIES.max);
    for g in groups {
        // Prefix lists of this service, by (group name, family): one per chunk of entries.
        let mut lists: BTreeMap<(String, Family), Vec<usize>> = BTreeMap::new();
        let mut perms: [Vec<Permission>; 2] = [Vec::new(), Vec::new()];
        for r in &g.rules {
            let slot = usize::from(r.direction == Direction::Egress);
            let ports: Vec<Option<(u16, u16)>> = match r.proto {
                Proto::Tcp | Proto::Udp if r.ports.is_empty() => vec![Some((0, 65535))],
                Proto::Tcp | Proto::Udp => r.ports.iter().map(|p| Some(*p)).collect(),
                _ => vec![None],
            };
            let describe = |reason: &str| cloud::description(&format!("{}: {reason}", r.flow), EC2_TEXT, 255);
            let sources: Vec<Source> = match &r.peer {
                CloudPeer::OwnNodes { .. } => vec![Source::OwnGroup],
                CloudPeer::Networks { group, nets } if nets.len() > INLINE_NETWORKS => {
                    let ids = lists.entry((group.clone(), r.family)).or_insert_with(|| {
                        nets.chunks(chunk)
                            .enumerate()
                            .map(|(i, part)| {
                                let suffix = if nets.len() > chunk { format!("-{}", i + 1) } else { String::new() };
                                plan.prefix_lists.push(PrefixList {
                                    name: cloud::object_name(
                                        &format!("{}-{}-{}{suffix}", g.name, group, family_tag(r.family)),
                                        255,
                                    ),
                                    family: r.family,
                                    entries: part.to_vec(),
                                    reason: group.clone(),
                                });
                                plan.prefix_lists.len() - 1
                            })
                            .collect()
                    });
                    ids.iter().map(|&i| Source::PrefixList(i)).collect()
                }
                peer => peer.nets(r.family).into_iter().map(Source::Cidr).collect(),
            };
            for p in &ports {
                for &source in &sources {
                    // EC2 refuses a rule it already has: two flows that meet here are one.
                    let dup = |q: &Permission| {
                        ip_protocol(q.proto, q.family) == ip_protocol(r.proto, r.family)
                            && q.proto == r.proto
                            && q.ports == *p
                            && q.source == source
                    };
                    if perms[slot].iter().any(dup) {
                        continue;
                    }
                    perms[slot].push(Permission {
                        proto: r.proto,
                        family: r.family,
                        ports: *p,
                        source,
                        description: describe(&r.reason),
                    });
                }
            }
        }
        let [inbound, outbound] = perms;
        let default_egress = cloud::allows_everything(
            &g.rules.iter().filter(|r| r.direction == Direction::Egress).collect::<Vec<&CloudRule>>(),
        );
        // Spread over groups: first fit, in rule order, each direction on its own.
        let pack = |perms: Vec<Permission>, what: &str| -> Result<Vec<Vec<Permission>>, CloudError> {
            let total: usize = perms.iter().map(|p| weight(p, &plan.prefix_lists)).sum();
            let mut bins: Vec<(usize, Vec<Permission>)> = Vec::new();
            for p in perms {
                let w = weight(&p, &plan.prefix_lists);
                match bins.iter_mut().find(|(used, _)| used + w <= RULES_PER_GROUP.max) {
                    Some((used, bin)) => {
                        *used += w;
                        bin.push(p);
                    }
                    None => bins.push((w, vec![p])),
                }
            }
            if bins.len() > GROUPS_PER_INTERFACE.max {
                return Err(CloudError {
                    backend: "aws",
                    object: format!("{} {what} rules", g.service),
                    needed: total,
                    limit: Limit {
                        what: "rules on one interface (5 security groups per network interface x 60 rules per security group)",
                        max: GROUPS_PER_INTERFACE.max * RULES_PER_GROUP.max,
                        source: "AWS default quotas, adjustable",
                    },
                    because: "every network of a rule counts as one rule, a prefix list as its entries".into(),
                });
            }
            Ok(bins.into_iter().map(|(_, b)| b).collect())
        };
        let inbound = pack(inbound, "inbound");
        let outbound = if default_egress { Ok(Vec::new()) } else { pack(outbound, "outbound") };
        let (inbound, outbound) = match (inbound, outbound) {
            (Ok(i), Ok(o)) => (i, o),
            (i, o) => {
                errors.extend(i.err());
                errors.extend(o.err());
                continue;
            }
        };
        let count = inbound.len().max(outbound.len()).max(1);
        let mut inbound = inbound.into_iter();
        let mut outbound = outbound.into_iter();
        for i in 0..count {
            let name = if i == 0 { g.name.clone() } else { format!("{}-{}", g.name, i + 1) };
            let part = if count > 1 { format!(" (part {} of {count})", i + 1) } else { String::new() };
            plan.groups.push(Group {
                name,
                service: g.service.clone(),
                vpc: g.vpc.clone(),
                description: cloud::description(
                    &format!("fleetwall: the cloud layer of {} ({}){part}", g.service, g.nodes.join(", ")),
                    EC2_TEXT,
                    255,
                ),
                inbound: inbound.next().unwrap_or_default(),
                outbound: outbound.next().unwrap_or_default(),
                default_egress,
            });
        }
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

fn family_tag(f: Family) -> &'static str {
    match f {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

fn ip_protocol(p: Proto, family: Family) -> &'static str {
    match (p, family) {
        (Proto::All, _) => "-1",
        (Proto::Tcp, _) => "tcp",
        (Proto::Udp, _) => "udp",
        (Proto::Esp, _) => "50",
        (Proto::Icmp(_), Family::V4) => "icmp",
        (Proto::Icmp(_), Family::V6) => "icmpv6",
    }
}

/// The port fields of a permission: a range, an ICMP type with any code, or none.
fn port_fields(p: &Permission, m: &mut Map<String, Value>, from: &str, to: &str) {
    match (p.proto, p.ports) {
        (Proto::Icmp(t), _) => {
            m.insert(from.into(), json!(t.map_or(-1, i32::from)));
            m.insert(to.into(), json!(-1));
        }
        (_, Some((lo, hi))) => {
            m.insert(from.into(), json!(lo));
            m.insert(to.into(), json!(hi));
        }
        _ => {}
    }
}

fn reference(name: &str) -> String {
    format!("{{ref:{name}}}")
}

/// The EC2 API's `IpPermissions` of some permissions of group `own`.
fn ip_permissions(perms: &[Permission], lists: &[PrefixList], own: &str) -> Vec<Value> {
    perms
        .iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("IpProtocol".into(), json!(ip_protocol(p.proto, p.family)));
            port_fields(p, &mut m, "FromPort", "ToPort");
            let d = &p.description;
            match &p.source {
                Source::Cidr(n) if n.addr().is_ipv4() => {
                    m.insert("IpRanges".into(), json!([{ "CidrIp": n.to_string(), "Description": d }]));
                }
                Source::Cidr(n) => {
                    m.insert("Ipv6Ranges".into(), json!([{ "CidrIpv6": n.to_string(), "Description": d }]));
                }
                Source::PrefixList(i) => {
                    m.insert(
                        "PrefixListIds".into(),
                        json!([{ "PrefixListId": reference(&lists[*i].name), "Description": d }]),
                    );
                }
                Source::OwnGroup => {
                    m.insert("UserIdGroupPairs".into(), json!([{ "GroupId": reference(own), "Description": d }]));
                }
            }
            Value::Object(m)
        })
        .collect()
}

/// A managed prefix list's fields, the same in the EC2 request and the template.
fn prefix_list_fields(l: &PrefixList) -> Value {
    json!({
        "PrefixListName": l.name,
        "AddressFamily": match l.family { Family::V4 => "IPv4", Family::V6 => "IPv6" },
        "MaxEntries": l.entries.len(),
        "Entries": l.entries.iter().map(|e| json!({
            "Cidr": e.to_string(),
            "Description": cloud::description(&l.reason, EC2_TEXT, 255),
        })).collect::<Vec<_>>(),
    })
}

/// The EC2 API requests, in order, as `{action, ref, parameters}`.
fn requests(plan: &Plan) -> Value {
    let mut out = Vec::new();
    for l in &plan.prefix_lists {
        out.push(json!({
            "action": "CreateManagedPrefixList",
            "ref": l.name,
            "parameters": prefix_list_fields(l),
        }));
    }
    for g in &plan.groups {
        let mut params = Map::new();
        params.insert("GroupName".into(), json!(g.name));
        params.insert("Description".into(), json!(g.description));
        if let Some(v) = &g.vpc {
            params.insert("VpcId".into(), json!(format!("{{vpc:{v}}}")));
        }
        params.insert(
            "TagSpecifications".into(),
            json!([{ "ResourceType": "security-group", "Tags": [
                { "Key": "fleetwall:service", "Value": g.service },
                { "Key": "Name", "Value": g.name },
            ] }]),
        );
        out.push(json!({ "action": "CreateSecurityGroup", "ref": g.name, "parameters": params }));
    }
    for g in &plan.groups {
        if !g.inbound.is_empty() {
            out.push(json!({
                "action": "AuthorizeSecurityGroupIngress",
                "parameters": {
                    "GroupId": reference(&g.name),
                    "IpPermissions": ip_permissions(&g.inbound, &plan.prefix_lists, &g.name),
                },
            }));
        }
        if !g.default_egress {
            // A new group allows every outbound IPv4 connection; that rule goes first.
            out.push(json!({
                "action": "RevokeSecurityGroupEgress",
                "parameters": {
                    "GroupId": reference(&g.name),
                    "IpPermissions": [{ "IpProtocol": "-1", "IpRanges": [{ "CidrIp": "0.0.0.0/0" }] }],
                },
            }));
            if !g.outbound.is_empty() {
                out.push(json!({
                    "action": "AuthorizeSecurityGroupEgress",
                    "parameters": {
                        "GroupId": reference(&g.name),
                        "IpPermissions": ip_permissions(&g.outbound, &plan.prefix_lists, &g.name),
                    },
                }));
            }
        }
    }
    json!(out)
}

/// A CloudFormation logical id: letters and digits only.
fn logical_id(prefix: &str, name: &str) -> String {
    let mut s = String::from(prefix);
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            s.push(c.to_ascii_uppercase());
            s.extend(cs);
        }
    }
    s
}

fn get_att(id: &str, att: &str) -> Value {
    json!({ "Fn::GetAtt": [id, att] })
}

/// The same security groups as a CloudFormation template (JSON).
fn template(plan: &Plan) -> Result<Value, Vec<CloudError>> {
    let mut params = Map::new();
    let mut resources = Map::new();
    let list_ids: Vec<String> = plan.prefix_lists.iter().map(|l| logical_id("PrefixList", &l.name)).collect();
    for (l, id) in plan.prefix_lists.iter().zip(&list_ids) {
        resources.insert(
            id.clone(),
            json!({
                "Type": "AWS::EC2::PrefixList",
                "Properties": prefix_list_fields(l),
            }),
        );
    }
    for g in &plan.groups {
        let id = logical_id("SecurityGroup", &g.name);
        let mut props = Map::new();
        props.insert("GroupName".into(), json!(g.name));
        props.insert("GroupDescription".into(), json!(g.description));
        if let Some(v) = &g.vpc {
            let p = logical_id("VpcId", v);
            params.insert(
                p.clone(),
                json!({
                    "Type": "AWS::EC2::VPC::Id",
                    "Description": cloud::description(&format!("the AWS id of the fleet's VPC {v}"), EC2_TEXT, 255),
                }),
            );
            props.insert("VpcId".into(), json!({ "Ref": p }));
        }
        props.insert("Tags".into(), json!([{ "Key": "fleetwall:service", "Value": g.service }]));
        let mut selfs = Vec::new();
        let mut entries = |perms: &[Permission], direction: Direction| -> Vec<Value> {
            let mut out = Vec::new();
            for p in perms {
                let mut m = Map::new();
                m.insert("IpProtocol".into(), json!(ip_protocol(p.proto, p.family)));
                port_fields(p, &mut m, "FromPort", "ToPort");
                m.insert("Description".into(), json!(p.description));
                let (cidr, cidr6, list, group) = match direction {
                    Direction::Ingress => ("CidrIp", "CidrIpv6", "SourcePrefixListId", "SourceSecurityGroupId"),
                    Direction::Egress => {
                        ("CidrIp", "CidrIpv6", "DestinationPrefixListId", "DestinationSecurityGroupId")
                    }
                };
                match &p.source {
                    Source::Cidr(n) if n.addr().is_ipv4() => {
                        m.insert(cidr.into(), json!(n.to_string()));
                    }
                    Source::Cidr(n) => {
                        m.insert(cidr6.into(), json!(n.to_string()));
                    }
                    Source::PrefixList(i) => {
                        m.insert(list.into(), get_att(&list_ids[*i], "PrefixListId"));
                    }
                    Source::OwnGroup => {
                        // A group naming itself inline is a circular reference: its own resource.
                        m.insert("GroupId".into(), get_att(&id, "GroupId"));
                        m.insert(group.into(), get_att(&id, "GroupId"));
                        selfs.push((direction, Value::Object(m)));
                        continue;
                    }
                }
                out.push(Value::Object(m));
            }
            out
        };
        let inbound = entries(&g.inbound, Direction::Ingress);
        let outbound = entries(&g.outbound, Direction::Egress);
        props.insert("SecurityGroupIngress".into(), json!(inbound));
        if !g.default_egress {
            // An explicit list replaces AWS's default egress rule; an empty one would keep
            // it, so a group that sends nothing lists a rule that matches nothing.
            let outbound = if outbound.is_empty() && selfs.iter().all(|(d, _)| *d != Direction::Egress) {
                vec![json!({ "IpProtocol": "-1", "CidrIp": "127.0.0.1/32", "Description": "no outbound traffic" })]
            } else {
                outbound
            };
            props.insert("SecurityGroupEgress".into(), json!(outbound));
        }
        resources.insert(id.clone(), json!({ "Type": "AWS::EC2::SecurityGroup", "Properties": props }));
        for (i, (direction, rule)) in selfs.into_iter().enumerate() {
            let kind = match direction {
                Direction::Ingress => "Ingress",
                Direction::Egress => "Egress",
            };
            resources.insert(
                format!("{id}Self{kind}{}", i + 1),
                json!({ "Type": format!("AWS::EC2::SecurityGroup{kind}"), "Properties": rule }),
            );
        }
    }
    if resources.len() > TEMPLATE_RESOURCES.max {
        return Err(vec![CloudError {
            backend: "aws",
            object: "the CloudFormation template".into(),
            needed: resources.len(),
            limit: TEMPLATE_RESOURCES,
            because: "one resource per security group, prefix list and self-reference".into(),
        }]);
    }
    let mut t = Map::new();
    t.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
    t.insert("Description".into(), json!("fleetwall: the cloud layer (security groups) of the fleet's AWS services"));
    if !params.is_empty() {
        t.insert("Parameters".into(), Value::Object(params));
    }
    t.insert("Resources".into(), Value::Object(resources));
    Ok(Value::Object(t))
}

/// The AWS rendering of a whole Intent: EC2 requests and a CloudFormation template.
pub struct AwsOutput {
    /// `[{action, ref, parameters}]`, in the order to send them.
    pub requests: Value,
    /// The CloudFormation template.
    pub template: Value,
    /// How many security groups and prefix lists.
    pub groups: usize,
    /// How many prefix lists.
    pub prefix_lists: usize,
    /// Where the node firewall is finer (one line each, with the service).
    pub notes: Vec<String>,
}

/// Renders the AWS services of `intent`, or every limit they exceed.
pub fn render(intent: &Intent) -> Result<AwsOutput, Vec<CloudError>> {
    let groups = cloud::lower(intent, "aws-");
    let plan = build(&groups)?;
    let notes = groups.iter().flat_map(|g| g.coarser.iter().map(move |n| format!("{}: {n}", g.service))).collect();
    Ok(AwsOutput {
        notes,
        requests: requests(&plan),
        template: template(&plan)?,
        groups: plan.groups.len(),
        prefix_lists: plan.prefix_lists.len(),
    })
}
