//! A typed client: the API's paths in one place and calls that return the wire types,
//! over [`crate::http::Client`] (which owns the transport, TLS and the size limits).

use crate::http::{percent_encode as enc, Client, Response};
use crate::{
    Ack, AuditLog, ErrorBody, Health, ProjectList, Report, RulesetResponse, Service, ServiceList, StatusView,
    TokenList, Vpc, VpcList,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The paths of the API.
pub mod paths {
    use super::enc;
    use std::time::Duration;

    /// A node's ruleset, long-polled: answered once the node's revision is above `after`
    /// or `wait` has passed (then 304).
    pub fn ruleset(node: &str, after: i64, wait: Duration) -> String {
        format!("/v1/nodes/{}/ruleset?after={after}&wait={:.3}", enc(node), wait.as_secs_f64())
    }
    /// Where an agent reports its node's status.
    pub fn node_status(node: &str) -> String {
        format!("/v1/nodes/{}/status", enc(node))
    }
    /// A project.
    pub fn project(p: &str) -> String {
        format!("/v1/projects/{}", enc(p))
    }
    /// A project's VPCs.
    pub fn vpcs(p: &str) -> String {
        format!("{}/vpcs", project(p))
    }
    /// A project VPC.
    pub fn vpc(p: &str, v: &str) -> String {
        format!("{}/vpcs/{}", project(p), enc(v))
    }
    /// A project's services.
    pub fn services(p: &str) -> String {
        format!("{}/services", project(p))
    }
    /// A service.
    pub fn service(p: &str, s: &str) -> String {
        format!("{}/services/{}", project(p), enc(s))
    }
    /// A service's private-link resource of `provider`.
    pub fn privatelink(p: &str, s: &str, provider: &str) -> String {
        format!("{}/privatelink/{}", service(p, s), enc(provider))
    }
    /// The audit log, `limit` entries after id `after`.
    pub fn audit(limit: i64, after: i64) -> String {
        format!("/v1/audit?limit={limit}&after={after}")
    }
}

/// Why a call brought nothing.
#[derive(Debug)]
pub enum CallError {
    /// The server could not be reached, or the exchange failed.
    Transport(crate::http::Error),
    /// The server answered with an error status.
    Refused(ErrorBody),
    /// The server answered with success, but not with the body the API promises.
    Decode {
        /// The status it answered with.
        status: u16,
        /// What does not parse.
        message: String,
    },
}

impl CallError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Transport(_) => None,
            CallError::Refused(e) => Some(e.status),
            CallError::Decode { status, .. } => Some(*status),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "{e}"),
            CallError::Refused(e) => write!(f, "{} (status {})", e.message, e.status),
            CallError::Decode { status, message } => {
                write!(f, "the server's answer (status {status}) is not what the API promises: {message}")
            }
        }
    }
}

impl std::error::Error for CallError {}

/// The error body of a response: the server's own, or for something else (a proxy, a
/// server of another kind) its text as the message. The status is the response's,
/// whatever the body repeats.
pub fn error_body(resp: &Response) -> ErrorBody {
    if let Ok(e) = resp.json_body::<ErrorBody>() {
        return ErrorBody { status: resp.status, ..e };
    }
    let text = resp.text();
    let message = if text.trim().is_empty() { "request failed".to_string() } else { text.trim().to_string() };
    ErrorBody { diagnostics: Vec::new(), message, status: resp.status }
}

/// The body of a response as `T`, or the error it carries (status 400 and above).
pub fn decode<T: DeserializeOwned>(resp: &Response) -> Result<T, CallError> {
    if resp.status >= 400 {
        return Err(CallError::Refused(error_body(resp)));
    }
    resp.json_body().map_err(|e| CallError::Decode { status: resp.status, message: e.to_string() })
}

/// The API over one HTTP client.
#[derive(Clone)]
pub struct Api {
    http: Client,
}

impl Api {
    /// Calls through `http` (its base URL, token, CA and limits).
    pub fn new(http: Client) -> Api {
        Api { http }
    }

    /// The HTTP client, for calls that are not JSON (fleet files, YAML).
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// `method path` with an optional JSON body, answered with a `T`.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, CallError> {
        let resp = match body {
            Some(b) => self.http.send_json(method, path, b),
            None => self.http.request(method, path, None),
        }
        .map_err(CallError::Transport)?;
        decode(&resp)
    }

    /// `GET path`, answered with a `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        self.call("GET", path, None::<&()>)
    }

    /// `GET /healthz`.
    pub fn health(&self) -> Result<Health, CallError> {
        self.get("/healthz")
    }

    /// `GET /v1/status`: the rollout view.
    pub fn status(&self) -> Result<StatusView, CallError> {
        self.get("/v1/status")
    }

    /// `GET /v1/projects`.
    pub fn projects(&self) -> Result<ProjectList, CallError> {
        self.get("/v1/projects")
    }

    /// `GET /v1/projects/{p}/vpcs`.
    pub fn vpcs(&self, p: &str) -> Result<VpcList, CallError> {
        self.get(&paths::vpcs(p))
    }

    /// `GET /v1/projects/{p}/vpcs/{v}`.
    pub fn vpc(&self, p: &str, v: &str) -> Result<Vpc, CallError> {
        self.get(&paths::vpc(p, v))
    }

    /// `GET /v1/projects/{p}/services`.
    pub fn services(&self, p: &str) -> Result<ServiceList, CallError> {
        self.get(&paths::services(p))
    }

    /// `GET /v1/projects/{p}/services/{s}`.
    pub fn service(&self, p: &str, s: &str) -> Result<Service, CallError> {
        self.get(&paths::service(p, s))
    }

    /// `GET /v1/tokens`.
    pub fn tokens(&self) -> Result<TokenList, CallError> {
        self.get("/v1/tokens")
    }

    /// `GET /v1/audit`.
    pub fn audit(&self, limit: i64, after: i64) -> Result<AuditLog, CallError> {
        self.get(&paths::audit(limit, after))
    }

    /// Long-polls node `node`'s ruleset newer than revision `after` for up to `wait`; the
    /// whole exchange ends within `timeout`. None: nothing newer (304). The ruleset comes
    /// as JSON, for the caller to decode and validate.
    pub fn ruleset(
        &self,
        node: &str,
        after: i64,
        wait: Duration,
        timeout: Duration,
    ) -> Result<Option<RulesetResponse<serde_json::Value>>, CallError> {
        let resp = self
            .http
            .request_with_timeout("GET", &paths::ruleset(node, after, wait), None, timeout)
            .map_err(CallError::Transport)?;
        if resp.status == 304 {
            return Ok(None);
        }
        if resp.status != 200 && resp.status < 400 {
            return Err(CallError::Decode { status: resp.status, message: "expected 200 or 304".into() });
        }
        decode(&resp).map(Some)
    }

    /// `PUT /v1/nodes/{node}/status`.
    pub fn report(&self, node: &str, report: &Report) -> Result<Ack, CallError> {
        self.call("PUT", &paths::node_status(node), Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The server side of the exchange: the control plane's own HTTP server.
    use fleetwall_server::web::{Handler, Response, Server};
    use std::sync::Arc;

    fn serve(handler: Handler) -> (Server, Api) {
        let server = Server::bind("127.0.0.1:0", None, handler).unwrap();
        let api = Api::new(Client::new(&format!("http://{}", server.local_addr()), None).unwrap());
        (server, api)
    }

    #[test]
    fn errors_and_answers_of_the_wrong_shape_are_told_apart() {
        let handler: Handler = Arc::new(|req| match req.path.as_str() {
            "/v1/status" => Response::json(200, &serde_json::json!({ "nodes": "not a list" })),
            "/v1/tokens" => Response::new(502, "text/plain", "bad gateway from a proxy\n"),
            "/healthz" => {
                Response::json(500, &serde_json::json!({ "message": "lies about its status", "status": 401 }))
            }
            p if p.starts_with("/v1/nodes/n%201") || p.starts_with("/v1/nodes/n 1") => {
                if req.query("after") == Some("7") {
                    Response::new(304, "application/json", "")
                } else {
                    Response::json(
                        200,
                        &serde_json::json!({ "fleet_revision": 9, "hash": "h", "node": "n 1", "revision": 8, "ruleset": {} }),
                    )
                }
            }
            _ => Response::error(404, "no such thing"),
        });
        let (server, api) = serve(handler);
        match api.status() {
            Err(CallError::Decode { status: 200, message }) => assert!(message.contains("invalid type"), "{message}"),
            other => panic!("{other:?}"),
        }
        match api.tokens() {
            Err(CallError::Refused(e)) => {
                assert_eq!((e.status, e.message.as_str()), (502, "bad gateway from a proxy"));
            }
            other => panic!("{other:?}"),
        }
        let e = api.health().unwrap_err();
        assert_eq!((e.status(), e.to_string().as_str()), (Some(500), "lies about its status (status 500)"));
        let e = api.projects().unwrap_err();
        assert_eq!(e.to_string(), "no such thing (status 404)");
        assert_eq!(e.status(), Some(404));
        let t = Duration::from_secs(5);
        let got = api.ruleset("n 1", -1, Duration::ZERO, t).unwrap().unwrap();
        assert_eq!((got.revision, got.fleet_revision, got.node.as_str()), (8, 9, "n 1"));
        assert!(api.ruleset("n 1", 7, Duration::ZERO, t).unwrap().is_none());
        server.shutdown();
    }

    #[test]
    fn paths_escape_their_segments() {
        assert_eq!(
            paths::ruleset("a/b", -1, Duration::from_millis(1500)),
            "/v1/nodes/a%2Fb/ruleset?after=-1&wait=1.500"
        );
        assert_eq!(paths::privatelink("p", "s x", "aws"), "/v1/projects/p/services/s%20x/privatelink/aws");
    }
}
