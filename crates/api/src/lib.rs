//! The control plane's wire types: every body the server sends or receives that an agent
//! or the CLI reads, in one place, so the three cannot drift apart. The server serialises
//! these types, the agent and the CLI deserialise them; [`client`] is a thin typed layer
//! over [`http::Client`] (ureq with rustls, [`tls`]).
//!
//! The JSON is the one the API has always spoken (the server's `/openapi.json`, built from
//! these types' `utoipa::ToSchema` derives, describes it). Two rules keep it byte-for-byte
//! the same:
//!
//! * types that replaced a `json!` object declare their fields in alphabetical order
//!   (a `serde_json::Value` object prints its keys sorted); types that were structs
//!   already keep their order;
//! * views of an object of the fleet document ([`Vpc`], [`Service`]) carry the object
//!   as stored (`stored`) and print it merged, sorted, with the fields the server adds.
//!   The document is what the caller wrote (a fleet file's plain `2024` is a number), so
//!   it stays JSON; typed accessors read the parts the CLI shows.
//!
//! Deserialising ignores fields it does not know: a client one version behind a server
//! still reads what it understands.

#![warn(missing_docs)]

pub mod client;
pub mod http;
pub mod schema;
mod stored;
pub mod tls;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub use stored::text;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(description = "Liveness: the fleet revision this replica serves and its store.")]
pub struct Health {
    /// The head fleet revision.
    pub revision: i64,
    /// Always `ok`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub store: String,
}

/// Every failure's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(
    description = "Every failure. A rejected write changes nothing.",
    example = json!({
        "diagnostics": [{
            "code": "invalid-cidr",
            "hint": "write an IPv4 or IPv6 network such as 198.51.100.0/24 or 2001:db8::/32",
            "message": "ip_filter: not a valid CIDR",
            "path": "projects.acme-prod.services.pg-main.user_config.ip_filter[0]",
            "value": "10.0.0.0/33"
        }],
        "message": "Invalid 'user_config': Invalid input for ip_filter: not a valid CIDR '10.0.0.0/33' (write an IPv4 or IPv6 network such as 198.51.100.0/24 or 2001:db8::/32)",
        "status": 400
    })
)]
pub struct ErrorBody {
    /// Validation problems, when validation failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// One sentence (the first problem, for validation failures).
    pub message: String,
    /// The HTTP status, repeated.
    pub status: u16,
}

/// One validation problem. API writes locate it by `path` in the fleet document;
/// `PUT /v1/fleet` locates it by `line`/`col` in the submitted text and also gives
/// `severity` and `file`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Diagnostic {
    /// The stable diagnostic code.
    pub code: String,
    /// 1-based column in the submitted fleet file (`PUT /v1/fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    /// The file (`PUT /v1/fleet`: always `fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// How to fix it.
    #[serde(default)]
    pub hint: Option<String>,
    /// 1-based line in the submitted fleet file (`PUT /v1/fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
    /// Where in the fleet document (`projects.acme.services.pg.user_config.ip_filter[0]`).
    #[serde(default)]
    pub path: Option<String>,
    /// `error` or `warning` (`PUT /v1/fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The offending value as written.
    #[serde(default)]
    pub value: Option<String>,
}

impl Diagnostic {
    /// Where it is, for a message: ` at PATH`, ` at line L column C`, or nothing.
    pub fn location(&self) -> String {
        match (&self.path, self.line, self.col) {
            (Some(p), _, _) => format!(" at {p}"),
            (None, Some(l), Some(c)) => format!(" at line {l} column {c}"),
            _ => String::new(),
        }
    }
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"revision": 42, "nodes_changed": 3, "after": {"base_port": 12000}}))]
pub struct Written {
    /// The new fleet revision.
    pub revision: i64,
    /// How many nodes' rulesets changed.
    pub nodes_changed: usize,
    /// The object after the write (null when deleted or for a whole fleet).
    pub after: Value,
}

/// `GET /v1/fleet` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetRevision {
    /// The fleet document.
    #[schema(schema_with = schema::fleet_file)]
    pub fleet: Value,
    /// Its revision.
    pub revision: i64,
}

/// A project as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    /// Where its port allocation starts.
    pub base_port: Option<i64>,
    /// Its name.
    pub name: String,
    /// How many services it has.
    pub services: usize,
    /// How many VPCs it has.
    pub vpcs: usize,
}

/// `GET /v1/projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    /// The projects the caller may see.
    pub projects: Vec<Project>,
}

/// A project VPC: its name and the VPC as stored in the fleet document
/// (`cloud`, `network_cidr`, `privatelink_cidrs`, `peerings`).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct Vpc {
    /// Its name.
    pub name: String,
    /// The VPC object as stored (the server's OpenAPI document lists its fields).
    #[serde(flatten)]
    #[schema(ignore)]
    pub stored: Map<String, Value>,
}

/// `GET /v1/projects/{project}/vpcs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VpcList {
    /// The project's VPCs.
    pub vpcs: Vec<Vpc>,
}

/// A VPC peering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"peer_vpc": "vpc-0abc", "peer_cidrs": ["172.31.0.0/16"]}))]
pub struct Peering {
    /// The peer VPC's id.
    pub peer_vpc: String,
    /// The peer's networks.
    pub peer_cidrs: Vec<String>,
}

impl Vpc {
    /// Its cloud.
    pub fn cloud(&self) -> String {
        text(self.stored.get("cloud"))
    }
    /// Its network.
    pub fn network_cidr(&self) -> String {
        text(self.stored.get("network_cidr"))
    }
    /// Where private-link endpoints connect from (as stored; empty: the network).
    pub fn privatelink_cidrs(&self) -> Vec<String> {
        stored::texts(self.stored.get("privatelink_cidrs"))
    }
    /// Its peerings.
    pub fn peerings(&self) -> Vec<Peering> {
        let list = self.stored.get("peerings").and_then(Value::as_array);
        list.into_iter()
            .flatten()
            .map(|p| Peering { peer_vpc: text(p.get("peer_vpc")), peer_cidrs: stored::texts(p.get("peer_cidrs")) })
            .collect()
    }
}

/// One listener of one node: a row of `fleetwall ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Listener {
    /// The address it listens on.
    pub address: String,
    /// The component or cluster listener.
    pub component: String,
    /// The node.
    pub node: String,
    /// The port.
    pub port: u16,
    /// The project.
    pub project: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `dynamic`, `public`, `privatelink` or `cluster`.
    pub route: String,
    /// The service.
    pub service: String,
}

/// A service: the service as stored in the fleet document (`type`, `cloud`, `vpc`,
/// `nodes`, `user_config`, `privatelink`, `ports`) with its project, its listeners and,
/// when it has a private link, that link's state.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct Service {
    /// Its listeners.
    pub listeners: Vec<Listener>,
    /// Its name.
    pub name: String,
    /// `creating`, `active` or `deleting`; present when the service has a private link.
    #[serde(default)]
    pub privatelink_state: Option<String>,
    /// Its project.
    pub project: String,
    /// The service object as stored (the server's OpenAPI document lists its fields).
    #[serde(flatten)]
    #[schema(ignore)]
    pub stored: Map<String, Value>,
}

/// `GET /v1/projects/{project}/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceList {
    /// The project's services.
    pub services: Vec<Service>,
}

/// A node's addresses, as stored (one string or a list, each).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeAddresses {
    /// Private addresses.
    pub private: Vec<String>,
    /// Public addresses.
    pub public: Vec<String>,
}

impl Service {
    /// Its service type (`pg`, `kafka`, ...).
    pub fn service_type(&self) -> String {
        text(self.stored.get("type"))
    }
    /// Its cloud.
    pub fn cloud(&self) -> String {
        text(self.stored.get("cloud"))
    }
    /// Its project VPC (empty: none).
    pub fn vpc(&self) -> String {
        text(self.stored.get("vpc"))
    }
    /// Its nodes and their addresses, by name.
    pub fn nodes(&self) -> Vec<(String, NodeAddresses)> {
        let nodes = self.stored.get("nodes").and_then(Value::as_object);
        nodes
            .into_iter()
            .flatten()
            .map(|(name, n)| {
                let addrs =
                    NodeAddresses { private: stored::texts(n.get("private")), public: stored::texts(n.get("public")) };
                (name.clone(), addrs)
            })
            .collect()
    }
    /// Its `user_config` (an empty object when it has none).
    pub fn user_config(&self) -> Value {
        self.stored.get("user_config").cloned().unwrap_or_else(|| Value::Object(Map::new()))
    }
    /// How many `ip_filter` entries it has; None: no `ip_filter` (the default applies).
    pub fn ip_filter_len(&self) -> Option<usize> {
        self.stored.get("user_config")?.get("ip_filter")?.as_array().map(Vec::len)
    }
}

/// One row of the rollout view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    /// When the agent applied it (RFC 3339).
    pub applied_at: Option<String>,
    /// The hash its agent reported.
    pub applied_hash: Option<String>,
    /// The same as `applied_at`, in ms since the epoch.
    pub applied_ms: Option<i64>,
    /// The revision its agent reported.
    pub applied_revision: Option<i64>,
    /// The canonical hash of the ruleset it should enforce.
    pub desired_hash: String,
    /// The revision at which its ruleset last changed.
    pub desired_revision: i64,
    /// The agent's last error.
    pub error: Option<String>,
    /// In sync: how long the change took to apply; otherwise how long it has been waiting.
    pub lag_ms: i64,
    /// The node.
    pub node: String,
    /// Its project.
    pub project: String,
    /// Its service.
    pub service: String,
    /// `in-sync`, `pending`, `error` or `unknown` (never reported).
    pub state: String,
}

/// The states of [`NodeStatus::state`].
pub mod state {
    /// The agent enforces the desired ruleset.
    pub const IN_SYNC: &str = "in-sync";
    /// The agent has not applied the desired ruleset yet.
    pub const PENDING: &str = "pending";
    /// The agent's last attempt failed.
    pub const ERROR: &str = "error";
    /// The agent never reported.
    pub const UNKNOWN: &str = "unknown";
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// Every node the caller may see.
    pub nodes: Vec<NodeStatus>,
    /// The head fleet revision.
    pub revision: i64,
}

/// `GET /v1/nodes/{node}/ruleset`: a node's ruleset and its canonical hash. `R` is the
/// ruleset's type: an agent first reads it as JSON (`serde_json::Value`), so that a
/// ruleset it refuses can still be named by its revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(bound = "", description = "A node's ruleset and its canonical hash.")]
pub struct RulesetResponse<R = fleetwall_ir::NodeRuleset> {
    /// The head fleet revision when it was served.
    pub fleet_revision: i64,
    /// [`fleetwall_ir::NodeRuleset::canonical_hash`] of the ruleset.
    pub hash: String,
    /// The node.
    pub node: String,
    /// The fleet revision at which this node's ruleset last changed.
    pub revision: i64,
    /// The ruleset.
    #[schema(schema_with = schema::node_ruleset)]
    pub ruleset: R,
}

/// `PUT /v1/nodes/{node}/status`: what an agent enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// When it applied it (ms since the epoch).
    pub applied_ms: i64,
    /// The last error, if the last attempt failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The canonical hash of what it enforces (empty: nothing yet).
    pub hash: String,
    /// The revision it enforces (0: none of the server's).
    pub revision: i64,
}

/// The longest error text a status report may carry.
pub const MAX_REPORT_ERROR: usize = 4096;

impl Report {
    /// Checks a report from an agent: a revision the store has, a SHA-256 hex hash (or
    /// none yet), a time that is not far in the future, a bounded error text.
    pub fn validate(&self, head_revision: i64, now_ms: i64) -> Result<(), String> {
        if !(0..=head_revision).contains(&self.revision) {
            return Err(format!("invalid status report: revision must be 0..={head_revision}, got {}", self.revision));
        }
        if !(self.hash.is_empty() || is_hash(&self.hash)) {
            return Err("invalid status report: hash must be 64 lower-case hex digits (SHA-256) or empty".into());
        }
        // An hour of clock skew is tolerated; an applied time before 2020 is nonsense.
        if !(1_577_836_800_000..=now_ms + 3_600_000).contains(&self.applied_ms) {
            return Err(format!(
                "invalid status report: applied_ms {} is not a time in ms since the epoch near now",
                self.applied_ms
            ));
        }
        if self.error.as_ref().is_some_and(|e| e.len() > MAX_REPORT_ERROR) {
            return Err(format!("invalid status report: error is longer than {MAX_REPORT_ERROR} bytes"));
        }
        Ok(())
    }
}

/// Whether `s` looks like a ruleset hash: 64 lower-case hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `{"ok": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ack {
    /// Always true.
    pub ok: bool,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// E.g. `fleet.replace`, `service.update`, `token.create`.
    pub action: String,
    /// `admin:NAME`, `project:PROJECT` or `agent:NODE`.
    pub actor: String,
    /// The object after the write.
    pub after: Value,
    /// When (RFC 3339).
    pub at: String,
    /// The object before the write.
    pub before: Value,
    /// Increasing; pass the last one seen as `after` to page.
    pub id: i64,
    /// The fleet revision the write made; None for writes outside the fleet (tokens, keys).
    pub revision: Option<i64>,
    /// JSON pointer of the object written.
    pub target: String,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    /// The entries, oldest first.
    pub entries: Vec<AuditEntry>,
}

/// `POST /v1/tokens` (request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(
    description = "`{kind: project, project}`, `{kind: agent, node}` or `{kind: admin, name}`.",
    example = json!({"kind": "agent", "node": "pg-main-1"})
)]
pub struct TokenCreate {
    /// `project`, `agent` or `admin`.
    pub kind: String,
    /// The project (`project` tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The node (`agent` tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The admin's name (`admin` tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifetime in seconds; None: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<i64>,
}

/// `POST /v1/tokens` (response): the token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// What `token revoke` takes.
    pub id: String,
    /// `project`, `agent` or `admin`.
    pub kind: String,
    /// The project, node or admin name.
    pub scope: String,
    /// The bearer token.
    pub token: String,
}

/// A token as `token list` shows it (never the secret: `id` is a prefix of its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The first 12 hex digits of the token's SHA-256: what `token revoke` takes.
    pub id: String,
    /// `admin`, `project` or `agent`.
    pub kind: String,
    /// The admin's name, the project or the node.
    pub scope: String,
    /// When it was made.
    pub created_at: String,
    /// When it stops working, if ever.
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// `active`, `expired`, `revoked` or `orphaned` (its project or node was deleted).
    pub state: String,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Every token, oldest first. Listed with sorted keys, where `DELETE /v1/tokens/{id}`
    /// gives one in declaration order (as the API always has).
    #[serde(serialize_with = "stored::sorted")]
    pub tokens: Vec<TokenInfo>,
}

/// A service's backup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupKey {
    /// The project.
    pub project: String,
    /// The service.
    pub service: String,
    /// The public key (SubjectPublicKeyInfo PEM): what backups are encrypted with.
    pub public_key: String,
    /// The private key (PKCS#8 PEM), only when an admin asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// When the pair was made.
    pub created_at: String,
}

/// A service's private-link resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Privatelink {
    /// AWS: the endpoint service id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_service_id: Option<String>,
    /// AWS: the endpoint service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_service_name: Option<String>,
    /// Who may connect, as stored in the fleet document.
    #[schema(value_type = Vec<String>)]
    pub principals: Value,
    /// The project.
    pub project: String,
    /// `aws`, `azure` or `google`.
    pub provider: String,
    /// The service.
    pub service: String,
    /// `creating`, `active` or `deleting`.
    pub state: String,
}

impl Privatelink {
    /// The principals as text.
    pub fn principal_list(&self) -> Vec<String> {
        stored::texts(Some(&self.principals))
    }
}

/// `DELETE .../privatelink/{provider}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivatelinkDeletion {
    /// The project.
    pub project: String,
    /// `aws`, `azure` or `google`.
    pub provider: String,
    /// The service.
    pub service: String,
    /// `deleting` until every node enforces the change, then `deleted`.
    pub state: String,
}

/// One endpoint connection to a private link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivatelinkConnection {
    /// The endpoint's client-facing address in the customer's network, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The endpoint's DNS name.
    pub dns_name: String,
    /// The connection's own host (`privatelink-N-<service>-<project>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The connection's own port per component (Kafka brokers), from the pool 10000–31000.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    /// The connection's id.
    pub privatelink_connection_id: String,
    /// `pending-user-approval`, `user-approved`, `connected` or `active`.
    pub state: String,
    /// The address the user approved the endpoint with (Azure, Google).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ip_address: Option<String>,
    /// The customer's endpoint id.
    pub vpc_endpoint_id: String,
}

/// `GET .../privatelink/{provider}/connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivatelinkConnections {
    /// The connections the cloud side registered, by id.
    pub connections: Vec<PrivatelinkConnection>,
}

/// `POST .../privatelink/{provider}/connections`: the cloud side reports an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionRegistration {
    /// The connection's id (`[a-z0-9-]{1,40}`).
    pub privatelink_connection_id: String,
    /// The endpoint's id in the customer's cloud (AWS VPC endpoint, Azure private endpoint,
    /// Google PSC connection).
    pub vpc_endpoint_id: String,
    /// The endpoint's DNS name.
    pub dns_name: String,
    /// The endpoint's client-facing address.
    pub address: String,
}

/// `POST .../connections/{connection}/approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionApproval {
    /// The address of the endpoint in the user's network (absent: the one given before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ip_address: Option<String>,
}
