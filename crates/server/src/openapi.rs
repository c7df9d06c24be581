//! The OpenAPI 3.1 document served at `/openapi.json`, built in code: the bodies' schemas
//! from the API types (`fleetwall_api`'s `utoipa::ToSchema` derives, and the request bodies
//! below), the fleet file's schema from the parser's own types (the JSON Schema
//! `fleetwall schema` prints, embedded), and one operation for every route of
//! [`ROUTES`](crate::api::ROUTES).
//!
//! [`build`] refuses a route without an operation, an operation without a route and a
//! path parameter the template does not have (or the other way round), so a route cannot
//! be served undocumented: the document is built on first use and the tests build it.

use fleetwall_api as wire;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, HeaderBuilder, InfoBuilder, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder,
};
use utoipa::ToSchema;

/// Where the fleet file's own schemas (`$defs` of `fleetwall schema`) go among the
/// components: `FleetFile.Service`, `FleetFile.Vpc`, ...
const FLEET_PREFIX: &str = "FleetFile.";

// The request bodies the server reads as JSON objects (see `ops`). Each is the object
// the fleet document stores plus its `name`; the stored fields are merged in from the
// fleet file's schema when the document is built, so they cannot drift from the parser.

/// `POST /v1/projects`: a project of the fleet file, with its name.
#[derive(ToSchema)]
#[schema(example = json!({"name": "acme-prod", "base_port": 12000}))]
#[allow(dead_code)] // a schema only: the server reads the body as JSON
struct ProjectCreate {
    /// The project's name (names use letters, digits, `-`, `_` and `.`, start with a letter or digit, and have at most 63 characters).
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    name: String,
}

/// `POST /v1/projects/{project}/vpcs`: a VPC of the fleet file, with its name.
#[derive(ToSchema)]
#[schema(example = json!({"name": "vpc-eu", "cloud": "aws-eu-west-1", "network_cidr": "10.10.0.0/20"}))]
#[allow(dead_code)]
struct VpcCreate {
    /// The VPC's name (names use letters, digits, `-`, `_` and `.`, start with a letter or digit, and have at most 63 characters).
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    name: String,
}

/// `POST /v1/projects/{project}/services`: a service of the fleet file, with its name. Its
/// ports are allocated and pinned.
#[derive(ToSchema)]
#[schema(example = json!({
    "name": "pg-main",
    "type": "pg",
    "cloud": "aws-eu-west-1",
    "vpc": "vpc-eu",
    "nodes": {"pg-main-1": {"private": "10.10.0.5", "public": "203.0.113.5"}},
    "user_config": {"ip_filter": ["10.0.0.0/8"]}
}))]
#[allow(dead_code)]
struct ServiceCreate {
    /// The service's name (names use letters, digits, `-`, `_` and `.`, start with a letter or digit, and have at most 63 characters).
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    name: String,
}

/// `POST /v1/projects/{project}/services/{service}/nodes`: a node of the fleet file, with
/// its name.
#[derive(ToSchema)]
#[schema(example = json!({"name": "pg-main-3", "private": "10.10.0.7", "public": "203.0.113.7"}))]
#[allow(dead_code)]
struct NodeCreate {
    /// The node's name, unique across the fleet (names use letters, digits, `-`, `_` and `.`, start with a letter or digit, and have at most 63 characters).
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    name: String,
}

/// Edits in the `avn service update` syntax; give `config`, `remove` or both. Applied in
/// order, then the whole fleet is validated.
#[derive(ToSchema)]
#[schema(example = json!({
    "config": ["ip_filter=['10.0.0.0/8','1.2.3.4/32']", "public_access.kafka=true"],
    "remove": ["public_access.kafka_rest"]
}))]
#[allow(dead_code)]
struct UserConfigEdit {
    /// `-c KEY=VALUE` arguments: dotted keys (`public_access.kafka=true`), booleans, and
    /// array literals (`ip_filter=['10.0.0.0/8','1.2.3.4/32']`).
    #[schema(default = json!([]))]
    config: Option<Vec<String>>,
    /// `--remove-option KEY` arguments: keys to delete (`ip_filter`, `public_access.kafka`).
    #[schema(default = json!([]))]
    remove: Option<Vec<String>>,
}

/// Who may connect to a private link.
#[derive(ToSchema)]
#[schema(example = json!({"principals": ["arn:aws:iam::012345678901:user/mwf"]}))]
#[allow(dead_code)]
struct PrivatelinkPrincipals {
    /// The whole list: AWS IAM ARNs, Azure subscription ids or Google project ids.
    principals: Vec<String>,
}

/// The schemas of the API types, with the schemas they refer to.
fn type_schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut out = Vec::new();
    macro_rules! add {
        ($($t:ty),* $(,)?) => {$(
            out.push((<$t as ToSchema>::name().into_owned(), <$t as utoipa::PartialSchema>::schema()));
            <$t as ToSchema>::schemas(&mut out);
        )*};
    }
    add!(
        wire::Health,
        wire::ErrorBody,
        wire::Diagnostic,
        wire::Written,
        wire::FleetRevision,
        wire::Project,
        wire::ProjectList,
        wire::Vpc,
        wire::VpcList,
        wire::Peering,
        wire::Listener,
        wire::Service,
        wire::ServiceList,
        wire::NodeStatus,
        wire::StatusView,
        wire::RulesetResponse,
        wire::Report,
        wire::Ack,
        wire::AuditEntry,
        wire::AuditLog,
        wire::TokenCreate,
        wire::TokenCreated,
        wire::TokenInfo,
        wire::TokenList,
        wire::BackupKey,
        wire::Privatelink,
        wire::PrivatelinkDeletion,
        wire::PrivatelinkConnection,
        wire::PrivatelinkConnections,
        wire::ConnectionRegistration,
        wire::ConnectionApproval,
        ProjectCreate,
        VpcCreate,
        ServiceCreate,
        NodeCreate,
        UserConfigEdit,
        PrivatelinkPrincipals,
        crate::access::AccessRequest,
        crate::access::AccessList,
        crate::access::AccessAsk,
        crate::access::AccessDeny,
        crate::access::AccessCertificate,
        crate::access::AccessSettings,
        crate::access::AccessSettingsEdit,
        crate::access::SshCaKey,
        crate::access::SshCaList,
        crate::access::SshTrust,
    );
    out
}

/// A JSON body of the schema named `name`.
fn json_ref(name: &str) -> Content {
    Content::new(Some(Ref::from_schema_name(name)))
}

/// A JSON body of type `T`.
fn json_of<T: ToSchema>() -> Content {
    json_ref(&T::name())
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer)
}

fn path_param(name: &str, description: &str) -> ParameterBuilder {
    path_param_of(name, description, string())
}

fn path_param_of(name: &str, description: &str, schema: ObjectBuilder) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema.build()))
}

fn query(name: &str, description: &str, schema: ObjectBuilder) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema.build()))
}

fn project() -> ParameterBuilder {
    path_param("project", "The project's name.")
}

fn service() -> ParameterBuilder {
    path_param("service", "The service's name.")
}

fn node() -> ParameterBuilder {
    path_param("node", "The node's name (node names are unique across the fleet).")
}

fn connection() -> ParameterBuilder {
    path_param("connection", "The private-link connection's id.")
}

fn provider() -> ParameterBuilder {
    path_param_of("provider", "The private-link provider.", string().enum_values(Some(["aws", "azure", "google"])))
}

/// The start of an operation; it needs a token unless made [`public`].
fn op(id: &str, tag: &str, summary: &str, description: &str) -> OperationBuilder {
    OperationBuilder::new().operation_id(Some(id)).tag(tag).summary(Some(summary)).description(Some(description))
}

/// The operation needs no token.
fn public(b: OperationBuilder) -> OperationBuilder {
    b.securities(Some(Vec::<SecurityRequirement>::new()))
}

fn body(b: OperationBuilder, content: Content) -> OperationBuilder {
    b.request_body(Some(
        RequestBodyBuilder::new().required(Some(Required::True)).content("application/json", content).build(),
    ))
}

fn ok(b: OperationBuilder, status: u16, description: &str, content: Content) -> OperationBuilder {
    b.response(status.to_string(), ResponseBuilder::new().description(description).content("application/json", content))
}

/// A write's answer: the [`wire::Written`] of the new revision.
fn written(b: OperationBuilder, status: u16, extra: &str) -> OperationBuilder {
    let created = if status == 201 { "Created: " } else { "" };
    let description = format!("{created}The write was validated and committed as a new fleet revision.{extra}");
    ok(b, status, &description, json_of::<wire::Written>())
}

/// The failures the operation can answer with, each the `Error` response.
fn errors(mut b: OperationBuilder, codes: &[u16]) -> OperationBuilder {
    for c in codes {
        b = b.response(c.to_string(), Ref::from_response_name("Error"));
    }
    b
}

/// Every operation the API serves: (method, path template, operation).
fn operations() -> Vec<(&'static str, &'static str, Operation)> {
    let admin_or_project = "Admin token, or a project token for this project.";
    let ops: Vec<(&'static str, &'static str, OperationBuilder)> = vec![
        (
            "GET",
            "/healthz",
            ok(
                public(op(
                    "getHealth",
                    "meta",
                    "Liveness and the served revision",
                    "Unauthenticated. Answers 200 with the fleet revision this replica serves and its store (sqlite or postgres).",
                )),
                200,
                "The server is up.",
                json_of::<wire::Health>(),
            ),
        ),
        (
            "GET",
            "/openapi.json",
            ok(
                public(op(
                    "getOpenapi",
                    "meta",
                    "This document",
                    "Unauthenticated. The OpenAPI 3.1 description of every route.",
                )),
                200,
                "The OpenAPI document.",
                Content::new(Some(ObjectBuilder::new().schema_type(Type::Object).build())),
            ),
        ),
        ("GET", "/metrics", {
            let b = public(op(
                "getMetrics",
                "meta",
                "Prometheus metrics",
                "Unauthenticated. Requests, writes, the fleet revision, nodes in sync, long-poll watchers and propagation latency, in the Prometheus text format.",
            ));
            let text = Content::new(Some(string().build()));
            b.response(
                "200",
                ResponseBuilder::new().description("Prometheus text exposition format 0.0.4.").content("text/plain", text),
            )
        }),
        ("GET", "/v1/fleet", {
            let b = op(
                "getFleet",
                "fleet",
                "Read the fleet file",
                "Admin token only. Returns the whole fleet at the head revision, or at `revision`, as JSON `{revision, fleet}` or, with `format=yaml`, as a fleet file `fleetwall check` accepts.",
            )
            .parameter(query(
                "revision",
                "A past fleet revision (default: the head). 404 when there is no such revision.",
                integer().minimum(Some(1)),
            ))
            .parameter(query(
                "format",
                "`json` (default) or `yaml`.",
                string().enum_values(Some(["json", "yaml"])).default(Some(json!("json"))),
            ));
            let revision = HeaderBuilder::new().schema(integer().build()).description(Some("The fleet revision."));
            let response = ResponseBuilder::new()
                .description("The fleet. The YAML form starts with a `# fleet revision N` comment and carries the revision in `x-fleet-revision`.")
                .header("x-fleet-revision", revision.build())
                .content("application/json", json_of::<wire::FleetRevision>())
                .content("application/yaml", Content::new(Some(string().build())));
            errors(b.response("200", response), &[400, 401, 403, 404])
        }),
        ("PUT", "/v1/fleet", {
            let b = op(
                "replaceFleet",
                "fleet",
                "Replace the whole fleet",
                "Admin token only. Takes a whole fleet file as YAML (or JSON) text, validates it exactly like `fleetwall check` and stores it as the next revision; on failure answers 400 with every error located by line and column in the submitted text.",
            );
            let mut yaml = Content::new(Some(string().build()));
            yaml.example = Some(json!(
                "version: 1\nplatform:\n  management_gateways: [198.51.100.10]\nprojects:\n  acme-prod:\n    base_port: 12000\n"
            ));
            let request = RequestBodyBuilder::new()
                .required(Some(Required::True))
                .description(Some("A whole fleet file (v1). JSON is accepted too (it is read as YAML)."))
                .content("application/yaml", yaml)
                .content("application/json", json_ref(wire::schema::FLEET_FILE));
            errors(written(b.request_body(Some(request.build())), 200, ""), &[400, 401, 403])
        }),
        ("PUT", "/v1/platform", {
            let b = op(
                "replacePlatform",
                "fleet",
                "Replace the platform section",
                "Admin token only. Replaces the fleet's `platform` section (management gateways and ports) as a whole.",
            );
            errors(written(body(b, json_ref("FleetFile.Platform")), 200, ""), &[400, 401, 403])
        }),
        ("GET", "/v1/projects", {
            let b = op(
                "listProjects",
                "projects",
                "List projects",
                "Any token. An admin sees every project, a project token only its own.",
            );
            errors(ok(b, 200, "The projects the caller may see.", json_of::<wire::ProjectList>()), &[401])
        }),
        ("POST", "/v1/projects", {
            let b = op(
                "createProject",
                "projects",
                "Create a project",
                "Admin token only. Adds an empty project; 409 when the name is taken.",
            );
            errors(written(body(b, json_of::<ProjectCreate>()), 201, ""), &[400, 401, 403, 409])
        }),
        ("GET", "/v1/projects/{project}", {
            let b = op(
                "getProject",
                "projects",
                "Read a project",
                &format!("{admin_or_project} Its name, base port and how many VPCs and services it has."),
            );
            errors(ok(b.parameter(project()), 200, "The project.", json_of::<wire::Project>()), &[401, 403, 404])
        }),
        ("DELETE", "/v1/projects/{project}", {
            let b = op(
                "deleteProject",
                "projects",
                "Delete a project",
                "Admin token only. Removes the project with its VPCs, services and nodes; the nodes' rulesets are withdrawn.",
            );
            errors(written(b.parameter(project()), 200, ""), &[400, 401, 403, 404])
        }),
        ("GET", "/v1/projects/{project}/vpcs", {
            let b = op("listVpcs", "vpcs", "List a project's VPCs", admin_or_project).parameter(project());
            errors(ok(b, 200, "The project's VPCs.", json_of::<wire::VpcList>()), &[401, 403, 404])
        }),
        ("POST", "/v1/projects/{project}/vpcs", {
            let b = op(
                "createVpc",
                "vpcs",
                "Create a VPC",
                &format!("{admin_or_project} Adds a project VPC; 409 when the name is taken."),
            );
            errors(written(body(b.parameter(project()), json_of::<VpcCreate>()), 201, ""), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/projects/{project}/vpcs/{vpc}", {
            let b = op("getVpc", "vpcs", "Read a VPC", admin_or_project).parameter(project()).parameter(vpc());
            errors(ok(b, 200, "The VPC.", json_of::<wire::Vpc>()), &[401, 403, 404])
        }),
        ("DELETE", "/v1/projects/{project}/vpcs/{vpc}", {
            let b = op(
                "deleteVpc",
                "vpcs",
                "Delete a VPC",
                &format!("{admin_or_project} Refused (409) while a service still runs in the VPC."),
            );
            errors(written(b.parameter(project()).parameter(vpc()), 200, ""), &[400, 401, 403, 404, 409])
        }),
        ("POST", "/v1/projects/{project}/vpcs/{vpc}/peerings", {
            let b = op(
                "createPeering",
                "vpcs",
                "Add a peering",
                &format!("{admin_or_project} Peers the VPC with a customer VPC, admitting `peer_cidrs` on the private routes; 409 when it already peers with `peer_vpc`."),
            );
            let b = body(b.parameter(project()).parameter(vpc()), json_of::<wire::Peering>());
            errors(written(b, 201, " `after` is the VPC's list of peerings."), &[400, 401, 403, 404, 409])
        }),
        ("DELETE", "/v1/projects/{project}/vpcs/{vpc}/peerings/{peer_vpc}", {
            let b = op(
                "deletePeering",
                "vpcs",
                "Remove a peering",
                &format!("{admin_or_project} Removes the peering with `peer_vpc`; its CIDRs lose access."),
            );
            let peer = path_param("peer_vpc", "The peer VPC id of the peering (its `peer_vpc`, e.g. `vpc-0abc`).");
            errors(written(b.parameter(project()).parameter(vpc()).parameter(peer), 200, ""), &[400, 401, 403, 404])
        }),
        ("GET", "/v1/projects/{project}/services", {
            let b = op(
                "listServices",
                "services",
                "List a project's services",
                &format!("{admin_or_project} Each service with its nodes, user_config, port pins and listeners."),
            );
            errors(ok(b.parameter(project()), 200, "The project's services.", json_of::<wire::ServiceList>()), &[401, 403, 404])
        }),
        ("POST", "/v1/projects/{project}/services", {
            let b = op(
                "createService",
                "services",
                "Create a service",
                &format!("{admin_or_project} Adds a service (optionally with nodes and user_config); its ports are allocated and pinned, and its backup key pair is made. 409 when the name is taken."),
            );
            let b = body(b.parameter(project()), json_of::<ServiceCreate>());
            errors(written(b, 201, ""), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/projects/{project}/services/{service}", {
            let b = op(
                "getService",
                "services",
                "Read a service",
                &format!("{admin_or_project} The service with its listeners (as `fleetwall ports` lists them) and its private-link state."),
            );
            errors(ok(b.parameter(project()).parameter(service()), 200, "The service.", json_of::<wire::Service>()), &[401, 403, 404])
        }),
        ("DELETE", "/v1/projects/{project}/services/{service}", {
            let b = op(
                "deleteService",
                "services",
                "Delete a service",
                &format!("{admin_or_project} Removes the service and its nodes; their rulesets are withdrawn."),
            );
            errors(written(b.parameter(project()).parameter(service()), 200, ""), &[400, 401, 403, 404])
        }),
        ("PATCH", "/v1/projects/{project}/services/{service}/user_config", {
            let b = op(
                "updateUserConfig",
                "services",
                "Edit a service's user_config",
                &format!("{admin_or_project} Applies `avn service update -c KEY=VALUE` / `--remove-option KEY` style edits, e.g. `public_access.kafka=true` or `ip_filter=['10.0.0.0/8','1.2.3.4/32']`; an invalid value answers 400 naming the key."),
            );
            let b = body(b.parameter(project()).parameter(service()), json_of::<UserConfigEdit>());
            errors(written(b, 200, " `after` is the new user_config."), &[400, 401, 403, 404])
        }),
        ("POST", "/v1/projects/{project}/services/{service}/nodes", {
            let b = op(
                "addNode",
                "services",
                "Add a node",
                &format!("{admin_or_project} Adds a node with its private (and public) addresses; every node of the service gets new cluster rules. 409 when the name is taken."),
            );
            let b = body(b.parameter(project()).parameter(service()), json_of::<NodeCreate>());
            errors(written(b, 201, ""), &[400, 401, 403, 404, 409])
        }),
        ("DELETE", "/v1/projects/{project}/services/{service}/nodes/{node}", {
            let b = op(
                "removeNode",
                "services",
                "Remove a node",
                &format!("{admin_or_project} Removes the node; its ruleset is withdrawn and the other nodes stop admitting it."),
            );
            errors(written(b.parameter(project()).parameter(service()).parameter(node()), 200, ""), &[400, 401, 403, 404])
        }),
        ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}", {
            let b = op(
                "createPrivatelink",
                "privatelink",
                "Create a private link",
                &format!("{admin_or_project} Creates the service's private-link endpoint service for `principals`; it is `creating` until every node applies the change. 409 when the service already has one (one per service)."),
            );
            let b = body(b.parameter(project()).parameter(service()).parameter(provider()), json_of::<PrivatelinkPrincipals>());
            errors(ok(b, 201, "Created.", json_of::<wire::Privatelink>()), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/projects/{project}/services/{service}/privatelink/{provider}", {
            let b = op(
                "getPrivatelink",
                "privatelink",
                "Read a private link",
                &format!("{admin_or_project} Its state (`creating` → `active` once every node of the service applied it), principals and, on AWS, the endpoint service id and name."),
            );
            let b = b.parameter(project()).parameter(service()).parameter(provider());
            errors(ok(b, 200, "The private link.", json_of::<wire::Privatelink>()), &[400, 401, 403, 404])
        }),
        ("PUT", "/v1/projects/{project}/services/{service}/privatelink/{provider}", {
            let b = op(
                "updatePrivatelink",
                "privatelink",
                "Replace a private link's principals",
                &format!("{admin_or_project} Replaces the whole list of principals."),
            );
            let b = body(b.parameter(project()).parameter(service()).parameter(provider()), json_of::<PrivatelinkPrincipals>());
            errors(ok(b, 200, "The private link.", json_of::<wire::Privatelink>()), &[400, 401, 403, 404])
        }),
        ("DELETE", "/v1/projects/{project}/services/{service}/privatelink/{provider}", {
            let b = op(
                "deletePrivatelink",
                "privatelink",
                "Delete a private link",
                &format!("{admin_or_project} Removes the private link; it is `deleting` until every node of the service applies the change."),
            );
            let b = b.parameter(project()).parameter(service()).parameter(provider());
            errors(ok(b, 200, "Deletion started (or done).", json_of::<wire::PrivatelinkDeletion>()), &[400, 401, 403, 404])
        }),
        ("GET", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections", {
            let b = op(
                "listPrivatelinkConnections",
                "privatelink",
                "List private-link endpoint connections",
                &format!("{admin_or_project} The endpoints the cloud side registered, each with its host, its own ports (Kafka brokers) and its state (`pending-user-approval` → `user-approved` → `connected` → `active`). 404 when the service has no such private link."),
            );
            let b = b.parameter(project()).parameter(service()).parameter(provider());
            errors(ok(b, 200, "The connections.", json_of::<wire::PrivatelinkConnections>()), &[400, 401, 403, 404])
        }),
        ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections", {
            let b = op(
                "registerPrivatelinkConnection",
                "privatelink",
                "Register a private-link connection",
                "Admin token only (the cloud side reports an endpoint). The connection gets the first free host `privatelink-N-<service>-<project>` and, for Kafka, the lowest free broker ports of the pool 10000–31000, kept as long as it exists. AWS connections start `connected` (the principals approve them) and open at once; Azure and Google ones `pending-user-approval`.",
            );
            let b = body(b.parameter(project()).parameter(service()).parameter(provider()), json_of::<wire::ConnectionRegistration>());
            errors(ok(b, 201, "Registered.", json_of::<wire::PrivatelinkConnection>()), &[400, 401, 403, 404, 409])
        }),
        ("DELETE", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections/{connection}", {
            let b = op(
                "removePrivatelinkConnection",
                "privatelink",
                "Remove a private-link connection",
                "Admin token only. Its ports close on every node of the service with this write.",
            );
            let b = b.parameter(project()).parameter(service()).parameter(provider()).parameter(connection());
            errors(ok(b, 200, "The removed connection.", json_of::<wire::PrivatelinkConnection>()), &[400, 401, 403, 404])
        }),
        ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections/{connection}/approve", {
            let b = op(
                "approvePrivatelinkConnection",
                "privatelink",
                "Approve a private-link connection",
                &format!("{admin_or_project} Azure and Google: `pending-user-approval` → `user-approved` with the endpoint's address in the user's network; its ports open with this write. 409 in any other state."),
            );
            let b = b.parameter(project()).parameter(service()).parameter(provider()).parameter(connection());
            let b = body(b, json_of::<wire::ConnectionApproval>());
            errors(ok(b, 200, "The approved connection.", json_of::<wire::PrivatelinkConnection>()), &[400, 401, 403, 404, 409])
        }),
        ("POST", "/v1/projects/{project}/services/{service}/privatelink/{provider}/refresh", {
            let b = op(
                "refreshPrivatelink",
                "privatelink",
                "Refresh a private link's connections",
                &format!("{admin_or_project} Moves each connection on: `user-approved` → `connected`, and `connected` → `active` once every node of the service enforces the current rulesets."),
            );
            let b = b.parameter(project()).parameter(service()).parameter(provider());
            errors(ok(b, 200, "The connections.", json_of::<wire::PrivatelinkConnections>()), &[400, 401, 403, 404])
        }),
        ("GET", "/v1/status", {
            let b = op(
                "getStatus",
                "rollout",
                "Rollout status",
                "Any token; an admin sees every node, a project token its project's nodes. Each node's desired and applied revision and hash, state and lag.",
            );
            errors(ok(b, 200, "The rollout view.", json_of::<wire::StatusView>()), &[401])
        }),
        ("GET", "/v1/audit", {
            let b = op(
                "listAudit",
                "admin",
                "Read the audit log",
                "Admin token only. Every write and token creation with actor, target and before/after, oldest first; page with `after` (the last id seen) and `limit`.",
            )
            .parameter(query(
                "limit",
                "At most this many entries (1-10000).",
                integer().minimum(Some(1)).maximum(Some(10_000)).default(Some(json!(100))),
            ))
            .parameter(query("after", "Only entries with a larger id.", integer().minimum(Some(0)).default(Some(json!(0)))));
            errors(ok(b, 200, "The entries.", json_of::<wire::AuditLog>()), &[400, 401, 403])
        }),
        ("POST", "/v1/tokens", {
            let b = op(
                "createToken",
                "admin",
                "Create a token",
                "Admin token only. Mints a project, agent or admin bearer token and returns it once (only its hash is stored); the creation is audited.",
            );
            let b = body(b, json_of::<wire::TokenCreate>());
            let created = "Created. Store the token now: it cannot be read again.";
            errors(ok(b, 201, created, json_of::<wire::TokenCreated>()), &[400, 401, 403])
        }),
        ("GET", "/v1/tokens", {
            let b = op(
                "listTokens",
                "admin",
                "List tokens",
                "Admin token only. Every token with its id, kind, scope, expiry and state; never the secret.",
            );
            errors(ok(b, 200, "The tokens.", json_of::<wire::TokenList>()), &[401, 403])
        }),
        ("DELETE", "/v1/tokens/{id}", {
            let b = op(
                "revokeToken",
                "admin",
                "Revoke a token",
                "Admin token only. Revokes the token at once on every replica (tokens are not cached); the last active admin token cannot be revoked. Audited.",
            );
            let id = path_param_of(
                "id",
                "The token's id (a prefix of its SHA-256, as `token list` shows it).",
                string().pattern(Some("^[0-9a-f]{8,64}$")),
            );
            errors(ok(b.parameter(id), 200, "The revoked token.", json_of::<wire::TokenInfo>()), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/nodes/{node}/ruleset", {
            let b = op(
                "getNodeRuleset",
                "rollout",
                "Long-poll a node's ruleset",
                "Admin token, or the agent token of this node. Returns the node's ruleset once its revision is above `after`, waiting up to `wait` seconds (max 60) for a change; 304 when nothing newer arrived within `wait`, 404 when the node is not in the fleet.",
            )
            .parameter(node())
            .parameter(query(
                "after",
                "The ruleset revision the agent already has (default -1: answer at once).",
                integer().minimum(Some(-1)).default(Some(json!(-1))),
            ))
            .parameter(query(
                "wait",
                "How long to wait for a newer ruleset, in seconds (fractions allowed; more than 60 is a 400).",
                ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0)).maximum(Some(60)).default(Some(json!(0))),
            ));
            let b = ok(b, 200, "The node's ruleset, newer than `after`.", json_of::<wire::RulesetResponse>());
            let revision =
                HeaderBuilder::new().schema(integer().build()).description(Some("The node's current ruleset revision."));
            let unchanged = ResponseBuilder::new()
                .description("Nothing newer than `after` within `wait`; poll again.")
                .header("x-fleet-revision", revision.build());
            errors(b.response("304", unchanged), &[400, 401, 403, 404])
        }),
        ("GET", "/v1/nodes/{node}/backup-key", {
            let b = op(
                "getNodeBackupKey",
                "admin",
                "The backup public key of a node's service",
                "For the node's agent token (and the admin): the public key the node's backups are encrypted with.",
            );
            errors(ok(b.parameter(node()), 200, "The key.", json_of::<wire::BackupKey>()), &[400, 401, 403, 404])
        }),
        ("GET", "/v1/projects/{project}/services/{service}/backup-key", {
            let b = op(
                "getBackupKey",
                "services",
                "A service's backup key",
                "The service's RSA-3072 backup key pair (made with the service, or on first use for services loaded from a fleet file). The project's token and the admin read the public key; `?private=true` returns the private key too, admin only, and is audited as `backup.key.read-private`.",
            )
            .parameter(project())
            .parameter(service())
            .parameter(query(
                "private",
                "Also return the private key (admin only; audited).",
                ObjectBuilder::new().schema_type(Type::Boolean).default(Some(json!(false))),
            ));
            errors(ok(b, 200, "The key.", json_of::<wire::BackupKey>()), &[400, 401, 403, 404])
        }),
        ("PUT", "/v1/nodes/{node}/status", {
            let b = op(
                "reportNodeStatus",
                "rollout",
                "Report what a node enforces",
                "The agent token of this node only. The agent reports the revision and hash it applied (or its error); this feeds `/v1/status` and the propagation-latency metric.",
            );
            let b = body(b.parameter(node()), json_of::<wire::Report>());
            errors(ok(b, 200, "Recorded.", json_of::<wire::Ack>()), &[400, 401, 403])
        }),
    ];
    ops.into_iter().chain(access_operations()).map(|(m, p, b)| (m, p, b.build())).collect()
}

/// The operator-access operations (`crate::access`).
fn access_operations() -> Vec<(&'static str, &'static str, OperationBuilder)> {
    use crate::access as a;
    let id = || path_param_of("id", "The request's id (`acc-N`).", string().pattern(Some("^(acc-)?[0-9]+$")));
    let request = |b: OperationBuilder, status: u16, what: &str| ok(b, status, what, json_of::<a::AccessRequest>());
    vec![
        ("GET", "/v1/nodes/{node}/ssh-trust", {
            let b = op(
                "getNodeSshTrust",
                "rollout",
                "Long-poll a node's SSH trust files",
                "Admin token, or the agent token of this node. The `TrustedUserCAKeys` and `RevokedKeys` files for the node's sshd, once their hash differs from `hash`, waiting up to `wait` seconds (max 60); 304 when they did not change within `wait`.",
            )
            .parameter(node())
            .parameter(query("hash", "The hash of the files the agent has (default: answer at once).", string()))
            .parameter(query(
                "wait",
                "How long to wait for a change, in seconds (fractions allowed; more than 60 is a 400).",
                ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0)).maximum(Some(60)).default(Some(json!(0))),
            ));
            let unchanged = ResponseBuilder::new().description("Unchanged within `wait`; poll again.");
            let b = ok(b, 200, "The files.", json_of::<a::SshTrust>()).response("304", unchanged);
            errors(b, &[400, 401, 403, 404])
        }),
        ("POST", "/v1/access", {
            let b = op(
                "requestAccess",
                "access",
                "Ask for SSH access",
                "Operator token only. Asks for SSH access to one node or every node of a service, for a reason, for `duration_s` (at most the platform's maximum), with the operator's ed25519 public key. Someone else with the security role approves it (and the project's customer too, for projects that ask for it); unapproved, it expires. Audited as `access.request`.",
            );
            errors(request(body(b, json_of::<a::AccessAsk>()), 201, "Created, pending."), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/access", {
            let b = op(
                "listAccess",
                "access",
                "List access requests",
                "Admin and security tokens see every request, an operator its own, a project token its project's. `active=true`: only those with a certificate in force now (who has access now).",
            )
            .parameter(query("active", "Only requests in force now.", ObjectBuilder::new().schema_type(Type::Boolean).default(Some(json!(false)))));
            errors(ok(b, 200, "The requests, oldest first.", json_of::<a::AccessList>()), &[400, 401, 403])
        }),
        ("GET", "/v1/access/settings", {
            let b = op("getAccessSettings", "access", "The access settings", "Admin and security tokens. Principals, the longest window, the approval deadline and the projects needing customer approval.");
            errors(ok(b, 200, "The settings.", json_of::<a::AccessSettings>()), &[401, 403])
        }),
        ("PUT", "/v1/access/settings", {
            let b = op(
                "setAccessSettings",
                "access",
                "Change the access settings",
                "Admin token only. The fields given change, the others stay. Audited as `access.settings`.",
            );
            errors(
                ok(
                    body(b, json_of::<a::AccessSettingsEdit>()),
                    200,
                    "The settings now.",
                    json_of::<a::AccessSettings>(),
                ),
                &[400, 401, 403],
            )
        }),
        ("GET", "/v1/access/ca", {
            let b = op("listSshCa", "access", "The trusted SSH CA keys", "Any token but an agent's. Every trusted CA public key, oldest first; the last one signs new certificates.");
            errors(ok(b, 200, "The keys.", json_of::<a::SshCaList>()), &[401, 403])
        }),
        ("POST", "/v1/access/ca", {
            let b = op("rotateSshCa", "access", "Rotate the SSH CA", "Admin token only. A new CA key signs from now on; the older keys stay trusted until retired, so certificates already issued keep working. Audited as `access.ca.rotate`.");
            errors(ok(b, 201, "The keys now.", json_of::<a::SshCaList>()), &[401, 403])
        }),
        ("DELETE", "/v1/access/ca/{ca}", {
            let b = op("retireSshCa", "access", "Retire an SSH CA key", "Admin token only. Nodes stop trusting the key (not the signing one): its certificates stop working. Audited as `access.ca.retire`.")
                .parameter(path_param_of("ca", "The CA key's id.", integer().minimum(Some(1))));
            errors(ok(b, 200, "The keys now.", json_of::<a::SshCaList>()), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/access/{id}", {
            let b = op("getAccess", "access", "One access request", "Whoever may list it.").parameter(id());
            errors(request(b, 200, "The request."), &[400, 401, 403, 404])
        }),
        ("POST", "/v1/access/{id}/approve", {
            let b = op(
                "approveAccess",
                "access",
                "Approve an access request",
                "A security token (never the requester's person), or the project's token for the customer approval of a project that asks for it. When every approval is in, the certificate is issued: valid for the window from now, `source-address` the management gateways, key id the request id. Audited as `access.approve` and `access.issue`.",
            )
            .parameter(id());
            errors(request(b, 200, "The request (active once issued)."), &[400, 401, 403, 404, 409])
        }),
        ("POST", "/v1/access/{id}/deny", {
            let b = op("denyAccess", "access", "Deny an access request", "A security token, or the project's token for a project that asks for customer approval. Only pending requests. Audited as `access.deny`.").parameter(id());
            errors(
                request(body(b, json_of::<a::AccessDeny>()), 200, "The request, denied."),
                &[400, 401, 403, 404, 409],
            )
        }),
        ("POST", "/v1/access/{id}/revoke", {
            let b = op("revokeAccess", "access", "Revoke access", "Security, admin, the requester or the project's token. A pending request is withdrawn; an active one's key is listed in every node's revoked keys at once (agents long-poll them), which also refuses later requests with that key. Audited as `access.revoke`.").parameter(id());
            errors(request(b, 200, "The request, revoked."), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/access/{id}/certificate", {
            let b = op(
                "getAccessCertificate",
                "access",
                "The signed certificate",
                "The requester, security and admin tokens; while the request is active.",
            )
            .parameter(id());
            errors(ok(b, 200, "The certificate.", json_of::<a::AccessCertificate>()), &[400, 401, 403, 404, 409])
        }),
        ("GET", "/v1/access/{id}/audit", {
            let b = op("getAccessAudit", "access", "One access's story", "Admin and security tokens. Every audit entry of the request in order: request, approvals, the certificate's serial, deny, revoke, expiry or end.").parameter(id());
            errors(ok(b, 200, "The entries.", json_of::<wire::AuditLog>()), &[400, 401, 403, 404])
        }),
    ]
}

fn vpc() -> ParameterBuilder {
    path_param("vpc", "The VPC's name (its key in the project's `vpcs`).")
}

fn http_method(m: &str) -> Option<HttpMethod> {
    Some(match m {
        "GET" => HttpMethod::Get,
        "PUT" => HttpMethod::Put,
        "POST" => HttpMethod::Post,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => return None,
    })
}

/// The `{name}`s of a path template, in order.
fn template_params(template: &str) -> Vec<&str> {
    template.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

/// The operations of `routes`, or every way they disagree: a route without an operation,
/// an operation without a route, a method the document cannot say, path parameters that
/// are not the template's.
fn paths(routes: &[(&str, &str)]) -> Result<Paths, Vec<String>> {
    let mut problems = Vec::new();
    let served: BTreeSet<(&str, &str)> = routes.iter().copied().collect();
    if served.len() != routes.len() {
        problems.push("a route is listed twice".to_string());
    }
    let mut documented = BTreeSet::new();
    let mut paths = Paths::new();
    for (method, template, operation) in operations() {
        if !documented.insert((method, template)) {
            problems.push(format!("{method} {template} has two operations"));
        }
        if !served.contains(&(method, template)) {
            problems.push(format!("{method} {template} is documented but not served (not in ROUTES)"));
        }
        let in_path: Vec<&str> = operation
            .parameters
            .iter()
            .flatten()
            .filter(|p| p.parameter_in == ParameterIn::Path)
            .map(|p| p.name.as_str())
            .collect();
        if in_path != template_params(template) {
            problems.push(format!("{method} {template}: path parameters {in_path:?} are not the template's"));
        }
        match http_method(method) {
            Some(m) => paths.add_path_operation(template, vec![m], operation),
            None => problems.push(format!("{method} {template}: unknown method")),
        }
    }
    for (method, template) in &served {
        if !documented.contains(&(*method, *template)) {
            problems.push(format!("{method} {template} is served but has no operation in the OpenAPI document"));
        }
    }
    if problems.is_empty() {
        Ok(paths)
    } else {
        Err(problems)
    }
}

/// Renames the fleet file's `$defs` references to where the document keeps them.
fn relocate_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{FLEET_PREFIX}{name}");
                } else if r == "#" {
                    *r = format!("#/components/schemas/{}", wire::schema::FLEET_FILE);
                }
            }
            o.values_mut().for_each(relocate_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(relocate_refs),
        _ => {}
    }
}

/// The fleet file's schemas, from the parser's types: `FleetFile` and `FleetFile.*`
/// (its `$defs`, and its `platform` section, which the API also takes on its own).
fn fleet_file_schemas() -> Map<String, Value> {
    let mut root = fleetwall_model::schema::fleet_file_schema();
    relocate_refs(&mut root);
    let root = root.as_object_mut().expect("the fleet file schema is an object");
    root.remove("$schema");
    let mut out = Map::new();
    if let Some(Value::Object(defs)) = root.remove("$defs") {
        for (name, def) in defs {
            out.insert(format!("{FLEET_PREFIX}{name}"), def);
        }
    }
    let platform = root
        .get_mut("properties")
        .and_then(|p| p.get_mut("platform"))
        .expect("the fleet file schema has a platform section");
    let name = format!("{FLEET_PREFIX}Platform");
    out.insert(name.clone(), std::mem::replace(platform, json!({ "$ref": format!("#/components/schemas/{name}") })));
    out.insert(wire::schema::FLEET_FILE.into(), Value::Object(root.clone()));
    out
}

/// A node's ruleset: the IR the compiler makes and the agents render; described loosely
/// (the IR has no schema of its own yet), open to what a newer server adds.
fn node_ruleset_schema() -> Value {
    json!({
        "type": "object",
        "description": "The node's firewall in fleetwall's intermediate representation (the IR `fleetwall plan --format json` prints): its addresses, the address sets, and the ordered input and output rules. Agents render it to nftables (or iptables).",
        "additionalProperties": true,
        "properties": {
            "node": {"type": "string"},
            "description": {"type": "string"},
            "addresses": {"type": "array", "items": {"type": "string"}},
            "sets": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
            "input": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
            "output": {"type": "array", "items": {"type": "object", "additionalProperties": true}}
        }
    })
}

/// Adds the stored object's fields (the fleet file's schema `from`) to the view or create
/// body `into`, with its required fields but those the server fills in (`defaulted`).
fn merge_fields(schemas: &mut Map<String, Value>, into: &str, from: &str, defaulted: &[&str]) {
    let from = schemas.get(from).unwrap_or_else(|| panic!("no schema {from} to merge into {into}")).clone();
    let target = schemas.get_mut(into).unwrap_or_else(|| panic!("no schema {into}"));
    let props = target["properties"].as_object_mut().unwrap_or_else(|| panic!("{into} has no properties"));
    for (k, v) in from["properties"].as_object().into_iter().flatten() {
        assert!(props.insert(k.clone(), v.clone()).is_none(), "{into} already has a field {k}");
    }
    if let Some(required) = from.get("required").and_then(Value::as_array) {
        let list = target.as_object_mut().expect("object").entry("required").or_insert_with(|| json!([]));
        let list = list.as_array_mut().expect("required is a list");
        list.extend(required.iter().filter(|r| !defaulted.iter().any(|d| *r == d)).cloned());
    }
}

/// Says what a field's Rust type cannot: its values (`enum`) or its `format`. A field
/// that is not there is a bug here, not a silent no-op.
fn refine(schemas: &mut Map<String, Value>, schema: &str, field: &str, key: &str, value: Value) {
    let prop = schemas
        .get_mut(schema)
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut(field))
        .unwrap_or_else(|| panic!("no field {schema}.{field} to refine"));
    let nullable = prop.get("type").and_then(Value::as_array).is_some_and(|t| t.iter().any(|t| t == "null"));
    let value = match value {
        Value::Array(mut values) if key == "enum" && nullable => {
            values.push(Value::Null);
            Value::Array(values)
        }
        v => v,
    };
    prop[key] = value;
}

fn refinements(schemas: &mut Map<String, Value>) {
    use wire::state::{ERROR, IN_SYNC, PENDING, UNKNOWN};
    let kinds = json!(["project", "agent", "admin", "operator", "security"]);
    let providers = json!(["aws", "azure", "google"]);
    let link_states = json!(["creating", "active", "deleting"]);
    let list: [(&str, &str, &str, Value); 23] = [
        ("Health", "status", "enum", json!(["ok"])),
        ("Health", "store", "enum", json!(["sqlite", "postgres"])),
        ("Diagnostic", "severity", "enum", json!(["error", "warning"])),
        ("Listener", "route", "enum", json!(["dynamic", "public", "privatelink", "cluster"])),
        ("Listener", "protocol", "enum", json!(["tcp", "udp"])),
        ("Service", "privatelink_state", "enum", link_states.clone()),
        ("NodeStatus", "state", "enum", json!([IN_SYNC, PENDING, ERROR, UNKNOWN])),
        ("NodeStatus", "applied_at", "format", json!("date-time")),
        ("Ack", "ok", "enum", json!([true])),
        ("AuditEntry", "at", "format", json!("date-time")),
        ("TokenCreate", "kind", "enum", kinds.clone()),
        ("TokenCreated", "kind", "enum", kinds.clone()),
        ("TokenInfo", "kind", "enum", kinds),
        ("TokenInfo", "state", "enum", json!(["active", "expired", "revoked", "orphaned"])),
        ("TokenInfo", "created_at", "format", json!("date-time")),
        ("TokenInfo", "expires_at", "format", json!("date-time")),
        ("TokenInfo", "revoked_at", "format", json!("date-time")),
        ("BackupKey", "created_at", "format", json!("date-time")),
        ("AccessRequest", "state", "enum", json!(["pending", "active", "denied", "expired", "ended", "revoked"])),
        ("Privatelink", "provider", "enum", providers.clone()),
        ("Privatelink", "state", "enum", link_states),
        ("PrivatelinkDeletion", "provider", "enum", providers),
        ("PrivatelinkDeletion", "state", "enum", json!(["deleting", "deleted"])),
    ];
    for (schema, field, key, value) in list {
        refine(schemas, schema, field, key, value);
    }
}

/// The OpenAPI document of `routes`, or every way the routes and the operations disagree.
pub fn build(routes: &[(&str, &str)]) -> Result<Value, Vec<String>> {
    let paths = paths(routes)?;
    let bearer = Http::builder()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "An admin token (everything), a project token (one project) or an agent token (one node's ruleset and status).",
        ))
        .build();
    let error = ResponseBuilder::new()
        .description("The request failed (400 invalid, 401 no or unknown token, 403 not allowed, 404 not found, 405 method not allowed, 409 conflict). Nothing was changed.")
        .content("application/json", json_of::<wire::ErrorBody>());
    let components = ComponentsBuilder::new()
        .schemas_from_iter(type_schemas())
        .response("Error", error)
        .security_scheme("bearer", SecurityScheme::Http(bearer))
        .build();
    let tag = |name: &str, description: Option<&str>| TagBuilder::new().name(name).description(description).build();
    let info = InfoBuilder::new()
        .title("fleetwall control plane")
        .version("1")
        .description(Some("The fleetwall control plane holds the fleet (projects, VPCs, services, nodes and their access settings), compiles every node's firewall ruleset, and serves it to node agents by long-poll. Every write is validated like `fleetwall check`, is atomic, and bumps the fleet revision; a rejected write changes nothing. Errors are JSON `{message, status}`, with `diagnostics` when validation failed. Authenticate with `Authorization: Bearer TOKEN` (admin, project or agent tokens; see `fleetwall token`)."))
        .build();
    let api = OpenApiBuilder::new()
        .info(info)
        .paths(paths)
        .components(Some(components))
        .security(Some([SecurityRequirement::new("bearer", Vec::<String>::new())]))
        .tags(Some([
            tag("meta", Some("Health, metrics and this document (no token).")),
            tag("fleet", Some("The whole fleet file.")),
            tag("projects", None),
            tag("vpcs", None),
            tag("services", None),
            tag("privatelink", None),
            tag("rollout", Some("Node agents and rollout status.")),
            tag("admin", Some("Audit log, tokens and backup keys.")),
            tag("access", Some("Operator SSH access: requests, approvals, certificates, the SSH CA.")),
        ]))
        .build();
    let mut doc = serde_json::to_value(&api).expect("an OpenAPI document serializes");
    let schemas = doc["components"]["schemas"].as_object_mut().expect("the document has schemas");
    for (name, schema) in fleet_file_schemas() {
        assert!(schemas.insert(name.clone(), schema).is_none(), "two schemas named {name}");
    }
    schemas.insert(wire::schema::NODE_RULESET.into(), node_ruleset_schema());
    // (A service created without `nodes` starts with none: `ops::create_service`.)
    for (into, from, defaulted) in [
        ("Vpc", "Vpc", &[][..]),
        ("VpcCreate", "Vpc", &[]),
        ("Service", "Service", &[]),
        ("ServiceCreate", "Service", &["nodes"]),
        ("NodeCreate", "Node", &[]),
        ("ProjectCreate", "Project", &[]),
    ] {
        merge_fields(schemas, into, &format!("{FLEET_PREFIX}{from}"), defaulted);
    }
    refinements(schemas);
    Ok(doc)
}

/// The document of the served routes, as served. Panics when a route has no operation
/// (or an operation no route): the tests build it, so such a change cannot pass them.
pub fn document() -> String {
    match build(crate::api::ROUTES) {
        Ok(doc) => format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON serializes")),
        Err(problems) => panic!("the OpenAPI document does not match the served routes:\n{}", problems.join("\n")),
    }
}

/// Every `$ref` in `doc` that does not point at something in it (local references only;
/// any other is listed too).
pub fn dangling_refs(doc: &Value) -> Vec<String> {
    fn walk(doc: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref") {
                    let target = r.as_str().and_then(|r| r.strip_prefix('#')).and_then(|p| pointer(doc, p));
                    if target.is_none() {
                        out.push(format!("{at}: $ref {r}"));
                    }
                }
                for (k, x) in o {
                    walk(doc, x, &format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(doc, x, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    // A JSON pointer with its escapes (`~1` is `/`, `~0` is `~`), and percent-free.
    fn pointer<'a>(doc: &'a Value, p: &str) -> Option<&'a Value> {
        if p.contains('%') {
            return None;
        }
        doc.pointer(p)
    }
    let mut out = Vec::new();
    walk(doc, doc, "#", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_without_an_operation_is_refused() {
        let mut routes = crate::api::ROUTES.to_vec();
        routes.push(("GET", "/v1/undocumented"));
        let problems = build(&routes).unwrap_err();
        assert_eq!(
            problems,
            vec!["GET /v1/undocumented is served but has no operation in the OpenAPI document".to_string()]
        );
    }

    #[test]
    fn an_operation_without_a_route_is_refused() {
        let routes: Vec<_> = crate::api::ROUTES.iter().copied().filter(|r| *r != ("GET", "/v1/status")).collect();
        let problems = build(&routes).unwrap_err();
        assert_eq!(problems, vec!["GET /v1/status is documented but not served (not in ROUTES)".to_string()]);
    }

    #[test]
    fn path_parameters_must_be_the_templates() {
        assert_eq!(template_params("/v1/projects/{project}/vpcs/{vpc}"), vec!["project", "vpc"]);
        assert!(template_params("/v1/status").is_empty());
        // Every operation passed that check, or the served document would not build.
        let doc = build(crate::api::ROUTES).unwrap();
        let op = &doc["paths"]["/v1/projects/{project}/vpcs/{vpc}/peerings/{peer_vpc}"]["delete"];
        let names: Vec<&str> =
            op["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["project", "vpc", "peer_vpc"]);
    }

    #[test]
    fn a_dangling_ref_is_found() {
        let doc = json!({
            "components": {"schemas": {"A": {"type": "string"}, "a/b": {"type": "string"}}},
            "x": {"$ref": "#/components/schemas/A"},
            "y": [{"$ref": "#/components/schemas/B"}],
            "z": {"$ref": "#/components/schemas/a~1b"},
            "w": {"$ref": "other.json#/A"}
        });
        assert_eq!(dangling_refs(&doc), vec!["#/w: $ref \"other.json#/A\"", "#/y/0: $ref \"#/components/schemas/B\""]);
    }

    #[test]
    #[should_panic(expected = "no field Health.nope to refine")]
    fn refining_a_field_that_is_not_there_panics() {
        let mut doc = build(crate::api::ROUTES).unwrap();
        let schemas = doc["components"]["schemas"].as_object_mut().unwrap();
        refine(schemas, "Health", "nope", "enum", json!(["x"]));
    }
}
