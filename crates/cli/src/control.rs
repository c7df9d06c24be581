//! The client verbs of the control plane, in the managed platform's style (`status`,
//! `project`, `vpc`, `service`, `node`, `fleet`, `token`, `audit`). Client errors print
//! as `<message> (status N)` and exit 1.

use crate::commands::Outcome;
use crate::table;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use fleetwall_api as wire;
use fleetwall_api::http::{percent_encode as enc, Client, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The client's options: where the server is, who calls, the default project. Global:
/// accepted before the subcommand (`fleetwall --token X service list`) and after it.
#[derive(Args, Clone)]
#[command(next_help_heading = "Control-plane options")]
pub struct ClientArgs {
    /// The control plane's URL (client verbs: default http://127.0.0.1:8181; the agent needs it).
    #[arg(long, env = "FLEETWALL_SERVER", global = true)]
    pub server: Option<String>,
    /// Bearer token (default: $FLEETWALL_TOKEN, else .fleetwall/admin.token if readable).
    /// Visible to every user of the machine in the process list: an agent should use
    /// --token-file or $FLEETWALL_TOKEN.
    #[arg(long, env = "FLEETWALL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an https server (default: .fleetwall/ca.pem if it exists).
    #[arg(long, env = "FLEETWALL_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The project, for every verb that takes a PROJECT argument: the argument may then
    /// be left out (default: $FLEETWALL_PROJECT). With `token create`: a customer token
    /// for this project.
    #[arg(long, global = true, value_name = "PROJECT")]
    pub project: Option<String>,
}

/// Where the client verbs connect when no --server or $FLEETWALL_SERVER says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8181";

impl ClientArgs {
    /// The server URL the client verbs use.
    pub fn server(&self) -> &str {
        self.server.as_deref().unwrap_or(DEFAULT_SERVER)
    }

    /// The default project: --project, else $FLEETWALL_PROJECT.
    fn default_project(&self) -> Option<String> {
        self.project.clone().or_else(|| std::env::var("FLEETWALL_PROJECT").ok().filter(|p| !p.is_empty()))
    }

    /// The `N` positional names of a verb whose first is the project, which may be left
    /// out for --project or $FLEETWALL_PROJECT.
    fn named<const N: usize>(&self, mut names: Vec<String>) -> Result<[String; N]> {
        if names.len() == N {
            if let Some(p) = self.project.as_ref().filter(|p| **p != names[0]) {
                bail!("two projects: `{}` as the argument and `{p}` as --project; give one", names[0]);
            }
        } else if names.len() + 1 == N {
            let Some(p) = self.default_project() else {
                bail!("which project? give it as the first argument, with --project PROJECT, or in $FLEETWALL_PROJECT");
            };
            names.insert(0, p);
        } else {
            bail!("expected {} names, got {}", N, names.len());
        }
        names.try_into().map_err(|_| anyhow!("expected {N} names"))
    }
}

/// Client verbs.
pub enum ClientCmd {
    /// Rollout view: per node the desired and applied revision, hash and lag.
    Status,
    /// Projects.
    Project(ProjectCmd),
    /// Project VPCs and their peerings.
    Vpc(VpcCmd),
    /// Services: create, update user_config (-c), private links.
    Service(ServiceCmd),
    /// Nodes of a service.
    Node(NodeCmd),
    /// The whole fleet document (admin).
    Fleet(FleetCmd),
    /// API tokens (admin).
    Token(TokenCmd),
    /// The audit log.
    Audit {
        /// Entries to show.
        limit: i64,
        /// Only entries after this id.
        after: i64,
    },
    /// A service's backup key: the public key, or with `private` the private one.
    BackupKey {
        /// [PROJECT] SERVICE as given (the project may be left out).
        names: Vec<String>,
        /// The private key (admin only; audited).
        private: bool,
    },
}

/// `project` verbs.
#[derive(Subcommand)]
pub enum ProjectCmd {
    /// List projects.
    List,
    /// Create a project (admin).
    Create {
        /// Project name.
        name: String,
        /// Base of the project's port allocations (10000-30000).
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Delete a project and everything in it (admin).
    Delete {
        /// Project name.
        name: String,
    },
}

/// `vpc` verbs.
#[derive(Subcommand)]
pub enum VpcCmd {
    /// List a project's VPCs.
    List {
        /// [PROJECT] (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 0..=1, required = false, value_names = ["PROJECT"])]
        names: Vec<String>,
    },
    /// Create a VPC.
    Create {
        /// [PROJECT] NAME (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "NAME"])]
        names: Vec<String>,
        /// Cloud (aws-eu-west-1, google-europe-west1, azure-westeurope, ...).
        #[arg(long)]
        cloud: String,
        /// The VPC's network.
        #[arg(long)]
        network_cidr: String,
        /// Where private-link endpoints connect from (default: the network).
        #[arg(long = "privatelink-cidr")]
        privatelink_cidrs: Vec<String>,
    },
    /// Delete a VPC (refused while a service uses it).
    Delete {
        /// [PROJECT] NAME (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "NAME"])]
        names: Vec<String>,
    },
    /// Peerings of a VPC.
    #[command(subcommand, name = "peering-connection")]
    Peering(PeeringCmd),
}

/// `vpc peering-connection` verbs.
#[derive(Subcommand)]
pub enum PeeringCmd {
    /// The peerings of a VPC.
    List {
        /// [PROJECT] VPC (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "VPC"])]
        names: Vec<String>,
    },
    /// Peer a VPC with another network.
    Create {
        /// [PROJECT] VPC (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "VPC"])]
        names: Vec<String>,
        /// The peer VPC's id.
        #[arg(long)]
        peer_vpc: String,
        /// The peer's networks.
        #[arg(long = "peer-cidr", required = true)]
        peer_cidrs: Vec<String>,
    },
    /// Remove a peering.
    Delete {
        /// [PROJECT] VPC PEER_VPC (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 2..=3, required = true, value_names = ["PROJECT", "VPC", "PEER_VPC"])]
        names: Vec<String>,
    },
}

/// `service` verbs.
#[derive(Subcommand)]
pub enum ServiceCmd {
    /// List a project's services.
    List {
        /// [PROJECT] (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 0..=1, required = false, value_names = ["PROJECT"])]
        names: Vec<String>,
    },
    /// Show a service with its listeners.
    Get {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Create a service.
    Create {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
        /// Service type (pg, kafka, ...).
        #[arg(long = "type")]
        service_type: String,
        /// Cloud.
        #[arg(long)]
        cloud: String,
        /// Project VPC to deploy into.
        #[arg(long)]
        vpc: Option<String>,
        /// A node: NAME=PRIVATE[,PRIVATE…][/PUBLIC[,PUBLIC…]] (repeatable).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// user_config KEY=VALUE (repeatable).
        #[arg(short = 'c')]
        config: Vec<String>,
    },
    /// Change user_config: -c KEY=VALUE (dotted keys, array literals), --remove-option KEY.
    Update {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
        /// KEY=VALUE, e.g. -c "ip_filter=['198.51.100.0/24']" or -c public_access.kafka=true;
        /// KEY=@FILE takes the value from a file, @FILE.json a JSON object of KEY: VALUE
        /// (for values too long for a command line).
        #[arg(short = 'c')]
        config: Vec<String>,
        /// Remove a user_config key.
        #[arg(long = "remove-option")]
        remove: Vec<String>,
    },
    /// Delete a service.
    Delete {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Private-link resources.
    Privatelink {
        /// aws, azure or google.
        #[arg(value_parser = ["aws", "azure", "google"])]
        provider: String,
        #[command(subcommand)]
        verb: PrivatelinkCmd,
    },
}

/// `service privatelink PROVIDER` verbs.
#[derive(Subcommand)]
pub enum PrivatelinkCmd {
    /// Create the resource (state creating → active once every node applied it).
    Create {
        /// Allowed principal (IAM ARN, subscription, project); repeatable.
        #[arg(long = "principal")]
        principals: Vec<String>,
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Show the resource.
    Get {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Replace the principals (the whole list).
    Update {
        /// Allowed principal; repeatable.
        #[arg(long = "principal")]
        principals: Vec<String>,
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Delete the resource.
    Delete {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Move the connections on (user-approved → connected; connected → active once every
    /// node enforces them).
    Refresh {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Endpoint connections.
    #[command(subcommand)]
    Connection(ConnectionCmd),
}

/// `connection` verbs.
#[derive(Subcommand)]
pub enum ConnectionCmd {
    /// List endpoint connections.
    List {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Approve an Azure or Google connection (pending-user-approval → user-approved).
    Approve {
        /// The endpoint's address in your network.
        #[arg(long = "user-ip-address", required = true)]
        user_ip_address: String,
        /// [PROJECT] SERVICE ID (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 2..=3, required = true, value_names = ["PROJECT", "SERVICE", "ID"])]
        names: Vec<String>,
    },
}

/// `node` verbs.
#[derive(Subcommand)]
pub enum NodeCmd {
    /// The nodes of a service and their addresses.
    List {
        /// [PROJECT] SERVICE (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 1..=2, required = true, value_names = ["PROJECT", "SERVICE"])]
        names: Vec<String>,
    },
    /// Add a node to a service.
    Add {
        /// [PROJECT] SERVICE NAME (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 2..=3, required = true, value_names = ["PROJECT", "SERVICE", "NAME"])]
        names: Vec<String>,
        /// Private address (repeatable).
        #[arg(long = "private")]
        private: Vec<String>,
        /// Public address (repeatable).
        #[arg(long = "public")]
        public: Vec<String>,
    },
    /// Remove a node from a service.
    Remove {
        /// [PROJECT] SERVICE NAME (PROJECT may be left out for --project or $FLEETWALL_PROJECT).
        #[arg(num_args = 2..=3, required = true, value_names = ["PROJECT", "SERVICE", "NAME"])]
        names: Vec<String>,
    },
}

/// `fleet` verbs.
#[derive(Subcommand)]
pub enum FleetCmd {
    /// Print the fleet file (YAML; --json for the document).
    Get {
        /// An older revision.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Replace the whole fleet with a fleet file (validated like `fleetwall check`).
    Put {
        /// The fleet file.
        file: PathBuf,
    },
}

/// `token` verbs.
#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once.
    Create {
        /// An agent token for one node (a customer token: the global --project P).
        #[arg(long, conflicts_with = "admin")]
        node: Option<String>,
        /// Another admin token, with this name.
        #[arg(long)]
        admin: Option<String>,
        /// An operator's token, with the operator's name: asks for SSH access (`access request`).
        #[arg(long, conflicts_with_all = ["admin", "node", "security"])]
        operator: Option<String>,
        /// A token of the security role, with the person's name: approves others' access.
        #[arg(long, conflicts_with_all = ["admin", "node"])]
        security: Option<String>,
        /// Lifetime: a number with s, m, h or d (`90m`, `30d`); default: until revoked.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<i64>,
    },
    /// Every token: id, kind, scope, created, expires, state (never the secret).
    List,
    /// Revoke a token by the id `token list` shows; effective at once on every replica.
    Revoke {
        /// The token's id (8 or more hex digits).
        id: String,
    },
}

/// A lifetime such as `90s`, `15m`, `12h` or `30d`, in seconds.
pub(crate) fn parse_ttl(s: &str) -> std::result::Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("'{s}' is not a lifetime such as 90m, 12h or 30d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{s}': the unit is s, m, h or d (e.g. 30d)")),
    };
    n.checked_mul(scale).filter(|t| *t > 0).ok_or_else(|| format!("'{s}' is not a positive lifetime"))
}

/// The failure of a client call, printed as `<message> (status N)`.
#[derive(Debug)]
pub struct ApiFailure(pub String);

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ApiFailure {}

/// The CA `serve` made in its default data directory, for an https server.
fn default_ca(server: &str) -> Option<PathBuf> {
    let path = PathBuf::from(".fleetwall/ca.pem");
    (server.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://")) && path.exists()).then_some(path)
}

fn default_token() -> Option<String> {
    std::fs::read_to_string(".fleetwall/admin.token").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

pub(crate) struct Api {
    client: Client,
}

/// The largest response `fleetwall fleet get` accepts (the whole fleet).
const WHOLE_FLEET_RESPONSE_LIMIT: usize = 1 << 30;

impl Api {
    pub(crate) fn new(a: &ClientArgs) -> Result<Api> {
        let ca = a.ca.clone().or_else(|| default_ca(a.server()));
        let mut client = Client::new(a.server(), ca.as_deref()).map_err(|e| ApiFailure(e.to_string()))?;
        if let Some(t) = a.token.clone().or_else(default_token) {
            client = client.with_token(&t);
        }
        Ok(Api { client })
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let resp = match body {
            Some(b) => self.client.send_json(method, path, b),
            None => self.client.request(method, path, None),
        }
        .map_err(|e| ApiFailure(e.to_string()))?;
        check(resp)
    }
}

fn check(resp: Response) -> Result<Value> {
    if resp.status >= 400 {
        let e = wire::client::error_body(&resp);
        let mut text = format!("{} (status {})", e.message, e.status);
        for d in e.diagnostics.iter().skip(1) {
            let msg = fleetwall_server::with_value(&d.message, d.value.as_deref());
            let hint = d.hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
            text.push_str(&format!("\n  also: {msg}{hint}{}", d.location()));
        }
        return Err(ApiFailure(text).into());
    }
    Ok(resp.json_body().unwrap_or_else(|_| json!({ "message": resp.text().trim() })))
}

/// The server's JSON as the wire type the API promises for it.
pub(crate) fn typed<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| ApiFailure(format!("the server's answer is not what the API promises: {e}")).into())
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

pub(crate) fn print_rows(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table::render(headers, rows));
}

pub(crate) fn show(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A write's outcome: the server's JSON, or one line saying what changed.
fn report(v: &Value, json_out: bool, what: &str) -> Result<()> {
    if json_out {
        show(v)
    } else {
        let w: wire::Written = typed(v.clone())?;
        let n = w.nodes_changed;
        println!("{what}: fleet revision {}, {n} node ruleset{} changed", w.revision, if n == 1 { "" } else { "s" });
    }
    Ok(())
}

fn parse_node(spec: &str) -> Result<(String, Value)> {
    let (name, addrs) =
        spec.split_once('=').ok_or_else(|| anyhow!("--node {spec}: expected NAME=PRIVATE[,…][/PUBLIC[,…]]"))?;
    let (private, public) = addrs.split_once('/').map(|(a, b)| (a, Some(b))).unwrap_or((addrs, None));
    let list = |s: &str| -> Value { Value::Array(s.split(',').filter(|x| !x.is_empty()).map(|x| json!(x)).collect()) };
    let mut n = json!({ "private": list(private) });
    if let Some(p) = public {
        n["public"] = list(p);
    }
    Ok((name.to_string(), n))
}

/// Runs a client verb.
pub fn client(args: &ClientArgs, cmd: ClientCmd) -> Result<Outcome> {
    let api = Api::new(args)?;
    let json_out = args.json;
    match cmd {
        ClientCmd::Status => {
            let v = api.call("GET", "/v1/status", None)?;
            if json_out {
                show(&v);
            } else {
                let st: wire::StatusView = typed(v)?;
                let rows: Vec<Vec<String>> = st
                    .nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.node.clone(),
                            format!("{}/{}", n.project, n.service),
                            n.desired_revision.to_string(),
                            opt(&n.applied_revision),
                            n.desired_hash.chars().take(12).collect(),
                            n.state.clone(),
                            format!("{:.3}s", n.lag_ms as f64 / 1000.0),
                            opt(&n.applied_at),
                            opt(&n.error),
                        ]
                    })
                    .collect();
                print_rows(
                    &["NODE", "SERVICE", "DESIRED", "APPLIED", "HASH", "STATE", "LAG", "APPLIED_AT", "ERROR"],
                    &rows,
                );
                let total = rows.len();
                let in_sync = st.nodes.iter().filter(|n| n.state == wire::state::IN_SYNC).count();
                println!("fleet revision {}: {in_sync}/{total} nodes in sync", st.revision);
            }
        }
        ClientCmd::Project(p) => match p {
            ProjectCmd::List => {
                let v = api.call("GET", "/v1/projects", None)?;
                if json_out {
                    show(&v)
                } else {
                    let list: wire::ProjectList = typed(v)?;
                    let rows: Vec<Vec<String>> = list
                        .projects
                        .iter()
                        .map(|p| vec![p.name.clone(), opt(&p.base_port), p.vpcs.to_string(), p.services.to_string()])
                        .collect();
                    print_rows(&["PROJECT", "BASE_PORT", "VPCS", "SERVICES"], &rows)
                }
            }
            ProjectCmd::Create { name, base_port } => {
                let mut body = json!({ "name": name });
                if let Some(b) = base_port {
                    body["base_port"] = json!(b);
                }
                let v = api.call("POST", "/v1/projects", Some(&body))?;
                report(&v, json_out, &format!("Created project {name}"))?
            }
            ProjectCmd::Delete { name } => {
                let v = api.call("DELETE", &format!("/v1/projects/{}", enc(&name)), None)?;
                report(&v, json_out, &format!("Deleted project {name}"))?
            }
        },
        ClientCmd::Vpc(c) => match c {
            VpcCmd::List { names } => {
                let [project] = args.named(names)?;
                let v = api.call("GET", &wire::client::paths::vpcs(&project), None)?;
                if json_out {
                    show(&v)
                } else {
                    let list: wire::VpcList = typed(v)?;
                    let rows: Vec<Vec<String>> = list
                        .vpcs
                        .iter()
                        .map(|vpc| {
                            // Peerings read as `vpc-0abc (172.31.0.0/16)`, not as JSON.
                            let peerings: Vec<String> = vpc
                                .peerings()
                                .iter()
                                .map(|p| format!("{} ({})", p.peer_vpc, p.peer_cidrs.join(",")))
                                .collect();
                            vec![
                                vpc.name.clone(),
                                vpc.cloud(),
                                vpc.network_cidr(),
                                vpc.privatelink_cidrs().join(","),
                                peerings.join(", "),
                            ]
                        })
                        .collect();
                    print_rows(&["VPC", "CLOUD", "NETWORK_CIDR", "PRIVATELINK_CIDRS", "PEERINGS"], &rows)
                }
            }
            VpcCmd::Create { names, cloud, network_cidr, privatelink_cidrs } => {
                let [project, name] = args.named(names)?;
                let mut body = json!({ "name": name, "cloud": cloud, "network_cidr": network_cidr });
                if !privatelink_cidrs.is_empty() {
                    body["privatelink_cidrs"] = json!(privatelink_cidrs);
                }
                let v = api.call("POST", &format!("/v1/projects/{}/vpcs", enc(&project)), Some(&body))?;
                report(&v, json_out, &format!("Created VPC {project}/{name}"))?
            }
            VpcCmd::Delete { names } => {
                let [project, name] = args.named(names)?;
                let v = api.call("DELETE", &format!("/v1/projects/{}/vpcs/{}", enc(&project), enc(&name)), None)?;
                report(&v, json_out, &format!("Deleted VPC {project}/{name}"))?
            }
            VpcCmd::Peering(PeeringCmd::List { names }) => {
                let [project, vpc] = args.named(names)?;
                let v = api.call("GET", &wire::client::paths::vpc(&project, &vpc), None)?;
                if json_out {
                    show(&v.get("peerings").cloned().unwrap_or(json!([])))
                } else {
                    let vpc: wire::Vpc = typed(v)?;
                    let rows: Vec<Vec<String>> =
                        vpc.peerings().into_iter().map(|p| vec![p.peer_vpc, p.peer_cidrs.join(",")]).collect();
                    print_rows(&["PEER_VPC", "PEER_CIDRS"], &rows)
                }
            }
            VpcCmd::Peering(PeeringCmd::Create { names, peer_vpc, peer_cidrs }) => {
                let [project, vpc] = args.named(names)?;
                let body = json!({ "peer_vpc": peer_vpc, "peer_cidrs": peer_cidrs });
                let v = api.call(
                    "POST",
                    &format!("/v1/projects/{}/vpcs/{}/peerings", enc(&project), enc(&vpc)),
                    Some(&body),
                )?;
                report(&v, json_out, &format!("Peered {project}/{vpc} with {peer_vpc}"))?
            }
            VpcCmd::Peering(PeeringCmd::Delete { names }) => {
                let [project, vpc, peer_vpc] = args.named(names)?;
                let v = api.call(
                    "DELETE",
                    &format!("/v1/projects/{}/vpcs/{}/peerings/{}", enc(&project), enc(&vpc), enc(&peer_vpc)),
                    None,
                )?;
                report(&v, json_out, &format!("Removed peering {project}/{vpc} ↔ {peer_vpc}"))?
            }
        },
        ClientCmd::Service(c) => service(&api, args, c)?,
        ClientCmd::Node(c) => {
            match c {
                NodeCmd::List { names } => {
                    let [project, service] = args.named(names)?;
                    let v = api.call("GET", &wire::client::paths::service(&project, &service), None)?;
                    let svc: wire::Service = typed(v)?;
                    if json_out {
                        // The addresses as stored: one string or a list each.
                        let nodes = svc.stored.get("nodes").and_then(Value::as_object);
                        let rows: Vec<Value> = nodes
                        .into_iter()
                        .flatten()
                        .map(|(name, n)| json!({ "node": name, "private": n.get("private"), "public": n.get("public") }))
                        .collect();
                        show(&json!(rows))
                    } else {
                        let rows: Vec<Vec<String>> = svc
                            .nodes()
                            .into_iter()
                            .map(|(name, a)| vec![name, a.private.join(","), a.public.join(",")])
                            .collect();
                        print_rows(&["NODE", "PRIVATE", "PUBLIC"], &rows)
                    }
                }
                NodeCmd::Add { names, private, public } => {
                    let [project, service, name] = args.named(names)?;
                    let mut body = json!({ "name": name, "private": private });
                    if !public.is_empty() {
                        body["public"] = json!(public);
                    }
                    let v = api.call(
                        "POST",
                        &format!("/v1/projects/{}/services/{}/nodes", enc(&project), enc(&service)),
                        Some(&body),
                    )?;
                    report(&v, json_out, &format!("Added node {name} to {project}/{service}"))?
                }
                NodeCmd::Remove { names } => {
                    let [project, service, name] = args.named(names)?;
                    let v = api.call(
                        "DELETE",
                        &format!("/v1/projects/{}/services/{}/nodes/{}", enc(&project), enc(&service), enc(&name)),
                        None,
                    )?;
                    report(&v, json_out, &format!("Removed node {name} from {project}/{service}"))?
                }
            }
        }
        ClientCmd::Fleet(FleetCmd::Get { revision }) => {
            let q = revision.map(|r| format!("&revision={r}")).unwrap_or_default();
            // The whole fleet, rendered back, can be larger than the 64 MiB fleet file the
            // server accepts and than the client's default response limit.
            let api = Api { client: api.client.clone().with_max_response_body(WHOLE_FLEET_RESPONSE_LIMIT) };
            if json_out {
                show(&api.call("GET", &format!("/v1/fleet?format=json{q}"), None)?);
            } else {
                let resp = api
                    .client
                    .request("GET", &format!("/v1/fleet?format=yaml{q}"), None)
                    .map_err(|e| ApiFailure(e.to_string()))?;
                if resp.status >= 400 {
                    check(resp)?;
                } else {
                    print!("{}", resp.text());
                }
            }
        }
        ClientCmd::Fleet(FleetCmd::Put { file }) => {
            let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let resp = api
                .client
                .request("PUT", "/v1/fleet", Some(("application/yaml", &text)))
                .map_err(|e| ApiFailure(e.to_string()))?;
            let v = check(resp)?;
            report(&v, json_out, &format!("Loaded {}", file.display()))?
        }
        ClientCmd::Token(TokenCmd::Create { node, admin, operator, security, ttl }) => {
            let mut body = match (args.project.clone(), node, admin, operator, security) {
                (Some(p), None, None, None, None) => json!({ "kind": "project", "project": p }),
                (None, Some(n), None, None, None) => json!({ "kind": "agent", "node": n }),
                (None, None, Some(a), None, None) => json!({ "kind": "admin", "name": a }),
                (None, None, None, Some(o), None) => json!({ "kind": "operator", "name": o }),
                (None, None, None, None, Some(s)) => json!({ "kind": "security", "name": s }),
                _ => bail!("give one of --project P, --node N, --admin NAME, --operator NAME or --security NAME"),
            };
            if let Some(t) = ttl {
                body["expires_in_s"] = json!(t);
            }
            let v = api.call("POST", "/v1/tokens", Some(&body))?;
            if json_out {
                show(&v)
            } else {
                println!("{}", typed::<wire::TokenCreated>(v)?.token)
            }
        }
        ClientCmd::Token(TokenCmd::List) => {
            let v = api.call("GET", "/v1/tokens", None)?;
            if json_out {
                show(&v)
            } else {
                let list: wire::TokenList = typed(v)?;
                let rows: Vec<Vec<String>> = list
                    .tokens
                    .into_iter()
                    .map(|t| vec![t.id, t.kind, t.scope, t.state, t.created_at, opt(&t.expires_at), opt(&t.revoked_at)])
                    .collect();
                print_rows(&["ID", "KIND", "SCOPE", "STATE", "CREATED", "EXPIRES", "REVOKED"], &rows)
            }
        }
        ClientCmd::Token(TokenCmd::Revoke { id }) => {
            let v = api.call("DELETE", &format!("/v1/tokens/{}", fleetwall_api::http::percent_encode(&id)), None)?;
            if json_out {
                show(&v)
            } else {
                let t: wire::TokenInfo = typed(v)?;
                println!("Revoked token {} ({} {})", t.id, t.kind, t.scope)
            }
        }
        ClientCmd::BackupKey { names, private } => {
            let [project, service] = args.named(names)?;
            let path =
                format!("/v1/projects/{}/services/{}/backup-key?private={private}", enc(&project), enc(&service));
            let v = api.call("GET", &path, None)?;
            if json_out {
                show(&v)
            } else {
                let key: wire::BackupKey = typed(v)?;
                let pem = if private { key.private_key.unwrap_or_default() } else { key.public_key };
                print!("{pem}");
            }
        }
        ClientCmd::Audit { limit, after } => {
            let v = api.call("GET", &format!("/v1/audit?limit={limit}&after={after}"), None)?;
            if json_out {
                show(&v)
            } else {
                let log: wire::AuditLog = typed(v)?;
                let rows: Vec<Vec<String>> = log
                    .entries
                    .into_iter()
                    .map(|e| vec![e.id.to_string(), e.at, e.actor, e.action, e.target, opt(&e.revision)])
                    .collect();
                print_rows(&["ID", "AT", "ACTOR", "ACTION", "TARGET", "REVISION"], &rows);
            }
        }
    }
    Ok(Outcome::Ok)
}

fn service(api: &Api, args: &ClientArgs, c: ServiceCmd) -> Result<()> {
    let json_out = args.json;
    let svc_path = |p: &str, s: &str| format!("/v1/projects/{}/services/{}", enc(p), enc(s));
    match c {
        ServiceCmd::List { names } => {
            let [project] = args.named(names)?;
            let v = api.call("GET", &format!("/v1/projects/{}/services", enc(&project)), None)?;
            if json_out {
                show(&v)
            } else {
                let list: wire::ServiceList = typed(v)?;
                let rows: Vec<Vec<String>> = list
                    .services
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.service_type(),
                            s.cloud(),
                            s.vpc(),
                            s.nodes().len().to_string(),
                            s.ip_filter_len().map_or_else(|| "null".into(), |n| n.to_string()),
                        ]
                    })
                    .collect();
                print_rows(&["SERVICE_NAME", "SERVICE_TYPE", "CLOUD_NAME", "VPC", "NODES", "IP_FILTER"], &rows);
            }
        }
        ServiceCmd::Get { names } => {
            let [project, service] = args.named(names)?;
            let v = api.call("GET", &svc_path(&project, &service), None)?;
            if json_out {
                show(&v)
            } else {
                let svc: wire::Service = typed(v)?;
                println!(
                    "SERVICE {project}/{service}  TYPE {}  CLOUD {}  VPC {}",
                    svc.service_type(),
                    svc.cloud(),
                    svc.vpc()
                );
                println!("user_config: {}", svc.user_config());
                let rows: Vec<Vec<String>> = svc
                    .listeners
                    .into_iter()
                    .map(|l| vec![l.node, l.component, l.route, l.address, l.port.to_string(), l.protocol])
                    .collect();
                print_rows(&["NODE", "COMPONENT", "ROUTE", "ADDRESS", "PORT", "PROTOCOL"], &rows);
            }
        }
        ServiceCmd::Create { names, service_type, cloud, vpc, nodes, config } => {
            let [project, service] = args.named(names)?;
            let mut body = json!({ "name": service, "type": service_type, "cloud": cloud });
            if let Some(v) = vpc {
                body["vpc"] = json!(v);
            }
            let mut ns = serde_json::Map::new();
            for spec in &nodes {
                let (name, n) = parse_node(spec)?;
                ns.insert(name, n);
            }
            body["nodes"] = Value::Object(ns);
            if !config.is_empty() {
                let edits = config
                    .iter()
                    .map(|c| fleetwall_model::edit::Edit::parse_set(c))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ApiFailure)?;
                body["user_config"] = fleetwall_model::edit::apply(&json!({}), &edits).map_err(ApiFailure)?;
            }
            let v = api.call("POST", &format!("/v1/projects/{}/services", enc(&project)), Some(&body))?;
            report(&v, json_out, &format!("Created service {project}/{service}"))?
        }
        ServiceCmd::Update { names, config, remove } => {
            let [project, service] = args.named(names)?;
            if config.is_empty() && remove.is_empty() {
                bail!("nothing to change: give -c KEY=VALUE and/or --remove-option KEY");
            }
            let body = json!({ "config": expand_config(&config)?, "remove": remove });
            let v = api.call("PATCH", &format!("{}/user_config", svc_path(&project, &service)), Some(&body))?;
            report(&v, json_out, &format!("Updated {project}/{service}"))?
        }
        ServiceCmd::Delete { names } => {
            let [project, service] = args.named(names)?;
            let v = api.call("DELETE", &svc_path(&project, &service), None)?;
            report(&v, json_out, &format!("Deleted service {project}/{service}"))?
        }
        ServiceCmd::Privatelink { provider, verb } => {
            let base = |p: &str, s: &str| format!("{}/privatelink/{provider}", svc_path(p, s));
            let mut deleted = false;
            let v = match verb {
                PrivatelinkCmd::Create { principals, names } => {
                    let [project, service] = args.named(names)?;
                    api.call("POST", &base(&project, &service), Some(&json!({ "principals": principals })))?
                }
                PrivatelinkCmd::Get { names } => {
                    let [project, service] = args.named(names)?;
                    api.call("GET", &base(&project, &service), None)?
                }
                PrivatelinkCmd::Update { principals, names } => {
                    let [project, service] = args.named(names)?;
                    api.call("PUT", &base(&project, &service), Some(&json!({ "principals": principals })))?
                }
                PrivatelinkCmd::Delete { names } => {
                    let [project, service] = args.named(names)?;
                    deleted = true;
                    api.call("DELETE", &base(&project, &service), None)?
                }
                verb @ (PrivatelinkCmd::Connection(ConnectionCmd::List { .. }) | PrivatelinkCmd::Refresh { .. }) => {
                    let v = match verb {
                        PrivatelinkCmd::Refresh { names } => {
                            let [project, service] = args.named(names)?;
                            api.call("POST", &format!("{}/refresh", base(&project, &service)), None)?
                        }
                        PrivatelinkCmd::Connection(ConnectionCmd::List { names }) => {
                            let [project, service] = args.named(names)?;
                            api.call("GET", &format!("{}/connections", base(&project, &service)), None)?
                        }
                        _ => unreachable!("matched above"),
                    };
                    if json_out {
                        show(&v)
                    } else {
                        let list: wire::PrivatelinkConnections = typed(v)?;
                        print_connections(list.connections);
                    }
                    return Ok(());
                }
                PrivatelinkCmd::Connection(ConnectionCmd::Approve { user_ip_address, names }) => {
                    let [project, service, id] = args.named(names)?;
                    let path = format!("{}/connections/{}/approve", base(&project, &service), enc(&id));
                    let v = api.call("POST", &path, Some(&json!({ "user_ip_address": user_ip_address })))?;
                    if json_out {
                        show(&v)
                    } else {
                        print_connections(vec![typed(v)?]);
                    }
                    return Ok(());
                }
            };
            if json_out {
                show(&v)
            } else {
                let row = if deleted {
                    let d: wire::PrivatelinkDeletion = typed(v)?;
                    vec![d.project, d.service, d.provider, d.state, String::new(), String::new()]
                } else {
                    let pl: wire::Privatelink = typed(v)?;
                    let principals = pl.principal_list().join(",");
                    vec![pl.project, pl.service, pl.provider, pl.state, opt(&pl.aws_service_id), principals]
                };
                print_rows(&["PROJECT", "SERVICE", "PROVIDER", "STATE", "AWS_SERVICE_ID", "PRINCIPALS"], &[row]);
            }
        }
    }
    Ok(())
}

/// The connections of a private link as a table.
fn print_connections(list: Vec<wire::PrivatelinkConnection>) {
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .map(|c| {
            let ports: Vec<String> = c.ports.iter().map(|(k, p)| format!("{k}:{p}")).collect();
            vec![
                c.privatelink_connection_id,
                c.vpc_endpoint_id,
                c.dns_name,
                c.state,
                c.host.unwrap_or_default(),
                ports.join(","),
                c.user_ip_address.unwrap_or_default(),
            ]
        })
        .collect();
    print_rows(
        &["PRIVATELINK_CONNECTION_ID", "VPC_ENDPOINT_ID", "DNS_NAME", "STATE", "HOST", "PORTS", "USER_IP_ADDRESS"],
        &rows,
    );
}

/// `-c` values with their files read: `KEY=@FILE` becomes `KEY=<the file's text>`, and
/// `@FILE.json` (a JSON object) one `KEY=<JSON value>` per member.
fn expand_config(config: &[String]) -> Result<Vec<String>> {
    let read = |path: &str| std::fs::read_to_string(path).with_context(|| format!("cannot read -c file {path}"));
    let mut out = Vec::new();
    for c in config {
        if let Some(path) = c.strip_prefix('@') {
            let text = read(path)?;
            let v: Value = serde_json::from_str(&text).with_context(|| format!("{path} is not JSON"))?;
            let Value::Object(members) = v else { bail!("{path}: give a JSON object of KEY: VALUE") };
            for (k, v) in members {
                out.push(match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                });
            }
        } else if let Some((key, path)) = c.split_once("=@") {
            out.push(format!("{key}={}", read(path)?.trim_end()));
        } else {
            out.push(c.clone());
        }
    }
    Ok(out)
}
