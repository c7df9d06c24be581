//! Operator access (S10) over real HTTP: who may ask, approve, deny, revoke and read what;
//! the certificate an approval issues; caps, expiry and the audit story.

use fleetwall_api::http::Client;
use serde_json::{json, Value};
use ssh_key::{Certificate, HashAlg, PublicKey};

mod common;

const FLEET: &str = "version: 1
platform:
  management_gateways: [198.51.100.10, \"2001:db8:ffff::10\"]
projects:
  acme:
    services:
      pg-main:
        type: pg
        cloud: aws-eu-west-1
        nodes:
          pg-main-1: { public: [203.0.113.5] }
          pg-main-2: { public: [203.0.113.6] }
  beta:
    services:
      pg-beta:
        type: pg
        cloud: aws-eu-west-1
        nodes:
          pg-beta-1: { public: [203.0.113.7] }
";

fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = match body {
        Some(b) => c.send_json(method, path, &b).unwrap(),
        None => c.request(method, path, None).unwrap(),
    };
    (r.status, r.json_body().unwrap_or(Value::Null))
}

/// A fresh ed25519 public key line, as an operator's `.pub` file holds it.
fn new_key(comment: &str) -> String {
    let mut seed = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut seed).unwrap();
    let mut k = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed));
    k.set_comment(comment);
    k.public_key().to_openssh().unwrap()
}

struct World {
    env: common::Env,
    alice: Client,     // operator
    carol: Client,     // another operator
    bob: Client,       // security
    alice_sec: Client, // alice's own security token: still alice
    acme: Client,      // customer of acme
    beta: Client,      // customer of beta
    agent: Client,     // agent of pg-main-1
}

fn token(env: &common::Env, body: Value) -> Client {
    let (st, v) = call(&env.admin(), "POST", "/v1/tokens", Some(body));
    assert_eq!(st, 201, "{v}");
    env.client(v["token"].as_str().unwrap())
}

fn world(tag: &str) -> World {
    let env = common::start(&format!("access-{tag}"), None);
    let r = env.admin().request("PUT", "/v1/fleet", Some(("application/yaml", FLEET.as_bytes()))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    World {
        alice: token(&env, json!({"kind": "operator", "name": "alice"})),
        carol: token(&env, json!({"kind": "operator", "name": "carol"})),
        bob: token(&env, json!({"kind": "security", "name": "bob"})),
        alice_sec: token(&env, json!({"kind": "security", "name": "alice"})),
        acme: token(&env, json!({"kind": "project", "project": "acme"})),
        beta: token(&env, json!({"kind": "project", "project": "beta"})),
        agent: token(&env, json!({"kind": "agent", "node": "pg-main-1"})),
        env,
    }
}

fn ask(c: &Client, target: Value, duration_s: i64, key: &str) -> (u16, Value) {
    let mut body = json!({"reason": "INC-1: replication lag", "duration_s": duration_s, "public_key": key});
    for (k, v) in target.as_object().unwrap() {
        body[k] = v.clone();
    }
    call(c, "POST", "/v1/access", Some(body))
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

fn actions(c: &Client, id: &str) -> Vec<String> {
    let (st, v) = call(c, "GET", &format!("/v1/access/{id}/audit"), None);
    assert_eq!(st, 200, "{v}");
    v["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_approval_by_someone_else_issues_a_certificate_for_the_window_from_the_gateways() {
    let w = world("issue");
    let key = new_key("alice@laptop");
    let (st, req) = ask(&w.alice, json!({"node": "pg-main-1"}), 7200, &key);
    assert_eq!(st, 201, "{req}");
    assert_eq!(req["state"], "pending");
    assert_eq!(req["project"], "acme");
    assert_eq!(req["service"], "pg-main");
    assert_eq!(req["requester"], "operator:alice");
    let id = id(&req);
    // No certificate before approval.
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{id}/certificate"), None).0, 409);
    let (st, v) = call(&w.bob, "POST", &format!("/v1/access/{id}/approve"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "active");
    assert_eq!(v["approved_by"], "security:bob");
    let (st, c) = call(&w.alice, "GET", &format!("/v1/access/{id}/certificate"), None);
    assert_eq!(st, 200, "{c}");
    let cert = Certificate::from_openssh(c["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.key_id(), id);
    assert_eq!(cert.serial(), c["serial"].as_i64().unwrap() as u64);
    assert_eq!(cert.cert_type(), ssh_key::certificate::CertType::User);
    assert_eq!(cert.valid_before() - cert.valid_after(), 7200);
    // The login names, and the target node: only that node's sshd accepts the principal.
    assert_eq!(cert.valid_principals(), &["root".to_string(), "node:pg-main-1".to_string()]);
    assert_eq!(
        cert.critical_options().get("source-address").map(String::as_str),
        Some("198.51.100.10,2001:db8:ffff::10")
    );
    // The subject is alice's key, signed by the CA the nodes trust.
    assert_eq!(cert.public_key(), PublicKey::from_openssh(&key).unwrap().key_data());
    let (_, ca) = call(&w.bob, "GET", "/v1/access/ca", None);
    let ca_key = PublicKey::from_openssh(ca["keys"][0]["public_key"].as_str().unwrap()).unwrap();
    let fp = ca_key.fingerprint(HashAlg::Sha256);
    cert.validate_at(cert.valid_after() + 1, [&fp]).unwrap();
    let other = PublicKey::from_openssh(&new_key("x")).unwrap().fingerprint(HashAlg::Sha256);
    assert!(cert.validate_at(cert.valid_after() + 1, [&other]).is_err(), "only our CA validates it");
    assert!(cert.validate_at(cert.valid_before() + 1, [&fp]).is_err(), "not after the window");
    // The agent's trust files list that CA.
    let (st, t) = call(&w.agent, "GET", "/v1/nodes/pg-main-1/ssh-trust", None);
    assert_eq!(st, 200, "{t}");
    assert!(t["trusted_user_ca_keys"].as_str().unwrap().contains(ca["keys"][0]["public_key"].as_str().unwrap()));
    assert_eq!(t["authorized_principals"], json!({"root": "node:pg-main-1\nservice:acme/pg-main\n"}));
    let (_, other) = call(&w.env.admin(), "GET", "/v1/nodes/pg-beta-1/ssh-trust", None);
    assert_eq!(other["authorized_principals"], json!({"root": "node:pg-beta-1\nservice:beta/pg-beta\n"}));
    assert_ne!(other["hash"], t["hash"], "each node's files have their own hash");
    // A whole service's certificate names the service.
    let (_, whole) = ask(&w.alice, json!({"project": "beta", "service": "pg-beta"}), 60, &new_key("s"));
    let (_, v) = call(&w.bob, "POST", &format!("/v1/access/{}/approve", whole["id"].as_str().unwrap()), None);
    assert_eq!(v["principals"], json!(["root", "service:beta/pg-beta"]));
    // New login names reach every node's principals files.
    call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"principals": ["root", "ops"]})));
    let (_, t2) = call(&w.agent, "GET", "/v1/nodes/pg-main-1/ssh-trust", None);
    assert_eq!(t2["authorized_principals"]["ops"], "node:pg-main-1\nservice:acme/pg-main\n");
    assert_ne!(t2["hash"], t["hash"]);
    // Who has access now.
    let (_, active) = call(&w.bob, "GET", "/v1/access?active=true", None);
    assert_eq!(active["requests"].as_array().unwrap().len(), 2);
    assert_eq!(actions(&w.bob, &id), ["access.request", "access.approve", "access.issue"]);
    let (_, story) = call(&w.env.admin(), "GET", &format!("/v1/access/{id}/audit"), None);
    assert_eq!(story["entries"][2]["after"]["serial"], c["serial"]);
}

#[test]
fn the_requester_never_approves_and_only_the_security_role_does() {
    let w = world("roles");
    let (st, req) = ask(&w.alice, json!({"project": "acme", "service": "pg-main"}), 600, &new_key("a"));
    assert_eq!(st, 201, "{req}");
    let path = format!("/v1/access/{}/approve", id(&req));
    // Alice's own security token is still alice.
    let (st, v) = call(&w.alice_sec, "POST", &path, None);
    assert_eq!(st, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("someone else must"), "{v}");
    for (who, c) in [
        ("operator", &w.alice),
        ("other operator", &w.carol),
        ("admin", &w.env.admin()),
        ("customer", &w.acme),
        ("agent", &w.agent),
    ] {
        let (st, v) = call(c, "POST", &path, None);
        assert_eq!(st, 403, "{who} approved: {v}");
    }
    // Another project's customer does not even see it.
    assert_eq!(call(&w.beta, "POST", &path, None).0, 404);
    assert_eq!(call(&w.bob, "GET", &format!("/v1/access/{}", id(&req)), None).1["state"], "pending");
    // Only operators ask.
    for (who, c) in [("security", &w.bob), ("admin", &w.env.admin()), ("customer", &w.acme), ("agent", &w.agent)] {
        let (st, v) = ask(c, json!({"node": "pg-main-1"}), 60, &new_key("x"));
        assert_eq!(st, 403, "{who} asked: {v}");
    }
    // Deny: security only (this project asks for no customer approval).
    let deny = format!("/v1/access/{}/deny", id(&req));
    for (who, c) in [("operator", &w.alice), ("admin", &w.env.admin()), ("customer", &w.acme)] {
        assert_eq!(call(c, "POST", &deny, Some(json!({}))).0, 403, "{who} denied");
    }
    // The certificate: requester, security, admin; not another operator, nor a customer.
    assert_eq!(call(&w.carol, "GET", &format!("/v1/access/{}/certificate", id(&req)), None).0, 404);
    assert_eq!(call(&w.acme, "GET", &format!("/v1/access/{}/certificate", id(&req)), None).0, 403);
    // The story: security and admin only.
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{}/audit", id(&req)), None).0, 403);
    // Settings and the CA: the admin's.
    assert_eq!(call(&w.bob, "PUT", "/v1/access/settings", Some(json!({"max_duration_s": 99}))).0, 403);
    assert_eq!(call(&w.alice, "GET", "/v1/access/settings", None).0, 403);
    assert_eq!(call(&w.bob, "POST", "/v1/access/ca", None).0, 403);
    assert_eq!(call(&w.agent, "GET", "/v1/access/ca", None).0, 403);
    // An agent reads its own node's trust only.
    assert_eq!(call(&w.agent, "GET", "/v1/nodes/pg-main-2/ssh-trust", None).0, 403);
    assert_eq!(call(&w.alice, "GET", "/v1/nodes/pg-main-1/ssh-trust", None).0, 403);
}

#[test]
fn each_caller_lists_only_what_is_theirs() {
    let w = world("lists");
    let a = id(&ask(&w.alice, json!({"node": "pg-main-1"}), 60, &new_key("a")).1);
    let c = id(&ask(&w.carol, json!({"node": "pg-beta-1"}), 60, &new_key("c")).1);
    let ids = |cl: &Client| -> Vec<String> {
        let (st, v) = call(cl, "GET", "/v1/access", None);
        assert_eq!(st, 200, "{v}");
        v["requests"].as_array().unwrap().iter().map(id).collect()
    };
    assert_eq!(ids(&w.alice), [a.as_str()]);
    assert_eq!(ids(&w.carol), [c.as_str()]);
    assert_eq!(ids(&w.acme), [a.as_str()]);
    assert_eq!(ids(&w.beta), [c.as_str()]);
    assert_eq!(ids(&w.bob), [a.clone(), c.clone()]);
    assert_eq!(ids(&w.env.admin()), [a.clone(), c.clone()]);
    assert_eq!(call(&w.agent, "GET", "/v1/access", None).0, 403);
    // Another's request reads as missing, not as forbidden.
    assert_eq!(call(&w.beta, "GET", &format!("/v1/access/{a}"), None).0, 404);
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{c}"), None).0, 404);
    assert_eq!(call(&w.beta, "POST", &format!("/v1/access/{a}/revoke"), None).0, 404);
}

#[test]
fn denied_and_expired_requests_issue_nothing() {
    let w = world("expiry");
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-1"}), 60, &new_key("a"));
    let n = id(&req);
    let (st, v) = call(&w.bob, "POST", &format!("/v1/access/{n}/deny"), Some(json!({"reason": "no incident"})));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "denied");
    assert_eq!(v["denied_by"], "security:bob");
    assert_eq!(call(&w.bob, "POST", &format!("/v1/access/{n}/approve"), None).0, 409);
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{n}/certificate"), None).0, 409);
    assert_eq!(actions(&w.bob, &n), ["access.request", "access.deny"]);

    // A request nobody approves in time expires.
    let (st, _) = call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"pending_ttl_s": 1})));
    assert_eq!(st, 200);
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-1"}), 60, &new_key("b"));
    let m = id(&req);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let (st, v) = call(&w.bob, "POST", &format!("/v1/access/{m}/approve"), None);
    assert_eq!(st, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{m}"), None).1["state"], "expired");
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{m}/certificate"), None).0, 409);
    assert_eq!(actions(&w.bob, &m), ["access.request", "access.expire"]);
    let (_, active) = call(&w.bob, "GET", "/v1/access?active=true", None);
    assert!(active["requests"].as_array().unwrap().is_empty(), "{active}");

    // An issued window ends by itself.
    call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"pending_ttl_s": 3600})));
    // Certificates count whole seconds from the second of approval: a 2-second window
    // has at least one second left when approved, and is over 2.1 s later.
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-1"}), 2, &new_key("c"));
    let k = id(&req);
    assert_eq!(call(&w.bob, "POST", &format!("/v1/access/{k}/approve"), None).1["state"], "active");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{k}"), None).1["state"], "ended");
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{k}/certificate"), None).0, 409);
    assert_eq!(call(&w.alice, "POST", &format!("/v1/access/{k}/revoke"), None).0, 409);
    assert_eq!(actions(&w.bob, &k), ["access.request", "access.approve", "access.issue", "access.end"]);
}

#[test]
fn durations_keys_reasons_and_targets_are_checked() {
    let w = world("caps");
    let key = new_key("a");
    let node = json!({"node": "pg-main-1"});
    for d in [0, -5, 8 * 3600 + 1] {
        let (st, v) = ask(&w.alice, node.clone(), d, &key);
        assert_eq!(st, 400, "duration {d}: {v}");
    }
    assert_eq!(ask(&w.alice, node.clone(), 8 * 3600, &key).0, 201);
    let (st, _) = call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"max_duration_s": 900})));
    assert_eq!(st, 200);
    let (st, v) = ask(&w.alice, node.clone(), 901, &key);
    assert_eq!(st, 400);
    assert!(v["message"].as_str().unwrap().contains("1..=900"), "{v}");
    assert_eq!(call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"max_duration_s": 8 * 86_400}))).0, 400);
    assert_eq!(call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"principals": ["ro ot"]}))).0, 400);
    assert_eq!(call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"nope": 1}))).0, 400);
    // Keys: one ed25519 public key line.
    for bad in ["", "not a key", "ssh-ed25519 AAAA", &format!("{key}\n{key}")] {
        let (st, v) = ask(&w.alice, node.clone(), 60, bad);
        assert_eq!(st, 400, "key {bad:?}: {v}");
    }
    let mut body = json!({"node": "pg-main-1", "duration_s": 60, "public_key": key});
    for reason in ["", "   ", "two\nlines"] {
        body["reason"] = json!(reason);
        assert_eq!(call(&w.alice, "POST", "/v1/access", Some(body.clone())).0, 400, "reason {reason:?}");
    }
    body["reason"] = json!("x".repeat(501));
    assert_eq!(call(&w.alice, "POST", "/v1/access", Some(body.clone())).0, 400);
    // Targets: a node, or a project's service; nothing else, nothing missing.
    assert_eq!(ask(&w.alice, json!({"node": "nope"}), 60, &key).0, 404);
    assert_eq!(ask(&w.alice, json!({"project": "acme", "service": "nope"}), 60, &key).0, 404);
    assert_eq!(ask(&w.alice, json!({"project": "acme"}), 60, &key).0, 400);
    assert_eq!(ask(&w.alice, json!({"node": "pg-main-1", "project": "acme", "service": "pg-main"}), 60, &key).0, 400);
    assert_eq!(ask(&w.alice, json!({"node": "pg-main-1", "extra": 1}), 60, &key).0, 400);
    assert_eq!(call(&w.bob, "GET", "/v1/access/acc-x", None).0, 400);
    assert_eq!(call(&w.bob, "GET", "/v1/access/acc-99", None).0, 404);
    // Nothing refused was stored.
    let (_, all) = call(&w.bob, "GET", "/v1/access", None);
    assert_eq!(all["requests"].as_array().unwrap().len(), 1, "{all}");
}

#[test]
fn a_revoke_lists_the_key_at_once_and_burns_it() {
    let w = world("revoke");
    let key = new_key("a");
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-1"}), 600, &key);
    let n = id(&req);
    call(&w.bob, "POST", &format!("/v1/access/{n}/approve"), None);
    let (_, before) = call(&w.agent, "GET", "/v1/nodes/pg-main-1/ssh-trust", None);
    let hash = before["hash"].as_str().unwrap().to_string();
    // Unchanged: 304 at once without wait.
    let r = w.agent.request("GET", &format!("/v1/nodes/pg-main-1/ssh-trust?hash={hash}"), None).unwrap();
    assert_eq!(r.status, 304);
    // A long-poll wakes with the revoke.
    let agent = w.agent.clone();
    let path = format!("/v1/nodes/pg-main-1/ssh-trust?hash={hash}&wait=30");
    let poll = std::thread::spawn(move || {
        let r = agent.request_with_timeout("GET", &path, None, std::time::Duration::from_secs(40)).unwrap();
        (r.status, r.json_body::<Value>().unwrap_or(Value::Null))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (st, v) = call(&w.alice, "POST", &format!("/v1/access/{n}/revoke"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "revoked");
    assert_eq!(v["revoked_by"], "operator:alice");
    let (st, after) = poll.join().unwrap();
    assert_eq!(st, 200, "{after}");
    assert_ne!(after["hash"], before["hash"]);
    let plain = PublicKey::from_openssh(&key).unwrap();
    let listed: Vec<PublicKey> = after["revoked_keys"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| PublicKey::from_openssh(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_data(), plain.key_data());
    assert_eq!(call(&w.alice, "GET", &format!("/v1/access/{n}/certificate"), None).0, 409);
    // The key is burnt; a new one is fine.
    let (st, v) = ask(&w.alice, json!({"node": "pg-main-1"}), 600, &key);
    assert_eq!(st, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains(&n), "{v}");
    assert_eq!(ask(&w.alice, json!({"node": "pg-main-1"}), 600, &new_key("b")).0, 201);
    assert_eq!(actions(&w.bob, &n), ["access.request", "access.approve", "access.issue", "access.revoke"]);
    // A pending request withdrawn lists nothing.
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-2"}), 600, &new_key("c"));
    call(&w.alice, "POST", &format!("/v1/access/{}/revoke", id(&req)), None);
    let (_, t) = call(&w.agent, "GET", "/v1/nodes/pg-main-1/ssh-trust", None);
    assert_eq!(t["hash"], after["hash"]);
}

#[test]
fn a_project_that_asks_for_it_approves_too_with_its_own_token() {
    let w = world("customer");
    let (st, _) = call(&w.env.admin(), "PUT", "/v1/access/settings", Some(json!({"customer_approval": ["acme"]})));
    assert_eq!(st, 200);
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-1"}), 600, &new_key("a"));
    assert_eq!(req["customer_approval"], true);
    let n = id(&req);
    let (st, v) = call(&w.bob, "POST", &format!("/v1/access/{n}/approve"), None);
    assert_eq!(st, 200);
    assert_eq!(v["state"], "pending", "security alone is not enough: {v}");
    assert_eq!(call(&w.bob, "POST", &format!("/v1/access/{n}/approve"), None).0, 409, "twice");
    assert_eq!(call(&w.beta, "POST", &format!("/v1/access/{n}/approve"), None).0, 404);
    let (st, v) = call(&w.acme, "POST", &format!("/v1/access/{n}/approve"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "active");
    assert_eq!(v["customer_approved_by"], "project:acme");
    assert_eq!(actions(&w.bob, &n), ["access.request", "access.approve", "access.approve", "access.issue"]);
    // The customer may deny its own project's requests; beta's need no customer.
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-2"}), 600, &new_key("b"));
    assert_eq!(call(&w.acme, "POST", &format!("/v1/access/{}/deny", id(&req)), None).1["state"], "denied");
    let (_, req) = ask(&w.alice, json!({"node": "pg-beta-1"}), 600, &new_key("c"));
    assert_eq!(req["customer_approval"], false);
    assert_eq!(call(&w.beta, "POST", &format!("/v1/access/{}/approve", id(&req)), None).0, 403);
}

#[test]
fn the_ca_rotates_with_overlap_and_retires() {
    let w = world("ca");
    let admin = w.env.admin();
    let (_, one) = call(&admin, "GET", "/v1/access/ca", None);
    assert_eq!(one["keys"].as_array().unwrap().len(), 1);
    let (st, two) = call(&admin, "POST", "/v1/access/ca", None);
    assert_eq!(st, 201, "{two}");
    let keys = two["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0]["signing"].as_bool(), keys[1]["signing"].as_bool()), (Some(false), Some(true)));
    let (_, t) = call(&w.agent, "GET", "/v1/nodes/pg-main-1/ssh-trust", None);
    assert_eq!(t["trusted_user_ca_keys"].as_str().unwrap().lines().count(), 2, "{t}");
    // New certificates come from the new key.
    let (_, req) = ask(&w.alice, json!({"node": "pg-main-1"}), 600, &new_key("a"));
    call(&w.bob, "POST", &format!("/v1/access/{}/approve", id(&req)), None);
    let (_, c) = call(&w.alice, "GET", &format!("/v1/access/{}/certificate", id(&req)), None);
    let cert = Certificate::from_openssh(c["certificate"].as_str().unwrap()).unwrap();
    let newest = PublicKey::from_openssh(keys[1]["public_key"].as_str().unwrap()).unwrap();
    cert.validate_at(cert.valid_after() + 1, [&newest.fingerprint(HashAlg::Sha256)]).unwrap();
    let (id1, id2) = (keys[0]["id"].as_i64().unwrap(), keys[1]["id"].as_i64().unwrap());
    assert_eq!(call(&admin, "DELETE", &format!("/v1/access/ca/{id2}"), None).0, 409, "the signing key stays");
    assert_eq!(call(&w.bob, "DELETE", &format!("/v1/access/ca/{id1}"), None).0, 403);
    let (st, left) = call(&admin, "DELETE", &format!("/v1/access/ca/{id1}"), None);
    assert_eq!(st, 200, "{left}");
    assert_eq!(left["keys"].as_array().unwrap().len(), 1);
    let (_, t) = call(&w.agent, "GET", "/v1/nodes/pg-main-1/ssh-trust", None);
    assert_eq!(t["trusted_user_ca_keys"].as_str().unwrap().trim(), keys[1]["public_key"].as_str().unwrap());
    assert_eq!(call(&admin, "DELETE", &format!("/v1/access/ca/{id1}"), None).0, 404);
}

fn pg_url() -> Option<String> {
    match std::env::var("FLEETWALL_TEST_PG") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => {
            panic!("POSTGRESQL TESTS CANNOT RUN: FLEETWALL_TEST_PG is not set (scripts/test starts PostgreSQL and sets it)")
        }
        _ => {
            eprintln!("!!!!!!!! PostgreSQL tests skipped: FLEETWALL_TEST_PG is not set; run scripts/test !!!!!!!!");
            None
        }
    }
}

#[test]
fn on_two_postgresql_replicas_a_revoke_through_one_wakes_the_agents_of_the_other() {
    let Some(url) = pg_url() else { return };
    let name = format!("fw_access_{}", std::process::id());
    let mut admin_db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin_db.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    admin_db.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let db = format!("{}/{name}", url.rsplit_once('/').unwrap().0);
    let one = common::start("access-pg", Some(db.clone()));
    let r = one.admin().request("PUT", "/v1/fleet", Some(("application/yaml", FLEET.as_bytes()))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cp2 = fleetwall_server::ControlPlane::open(&db, common::catalog()).unwrap();
    let s2 = fleetwall_server::api::serve(cp2, "127.0.0.1:0", None).unwrap();
    let on_two = |token: &str| Client::new(&format!("http://{}", s2.local_addr()), None).unwrap().with_token(token);
    let mint =
        |body: Value| call(&one.admin(), "POST", "/v1/tokens", Some(body)).1["token"].as_str().unwrap().to_string();
    let alice = one.client(&mint(json!({"kind": "operator", "name": "alice"})));
    let bob = on_two(&mint(json!({"kind": "security", "name": "bob"})));
    let agent = on_two(&mint(json!({"kind": "agent", "node": "pg-main-1"})));
    let (st, req) = ask(&alice, json!({"node": "pg-main-1"}), 600, &new_key("a"));
    assert_eq!(st, 201, "{req}");
    let n = id(&req);
    let (st, v) = call(&bob, "POST", &format!("/v1/access/{n}/approve"), None);
    assert_eq!((st, v["state"].as_str()), (200, Some("active")), "{v}");
    let (_, before) = call(&agent, "GET", "/v1/nodes/pg-main-1/ssh-trust", None);
    let path = format!("/v1/nodes/pg-main-1/ssh-trust?hash={}&wait=30", before["hash"].as_str().unwrap());
    let poll = std::thread::spawn(move || {
        let r = agent.request_with_timeout("GET", &path, None, std::time::Duration::from_secs(40)).unwrap();
        (r.status, r.json_body::<Value>().unwrap_or(Value::Null))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(call(&alice, "POST", &format!("/v1/access/{n}/revoke"), None).0, 200);
    let (st, after) = poll.join().unwrap();
    assert_eq!(st, 200, "{after}");
    assert!(after["revoked_keys"].as_str().unwrap().contains(&n), "{after}");
    assert_eq!(actions(&bob, &n), ["access.request", "access.approve", "access.issue", "access.revoke"]);
    s2.shutdown();
    drop(one);
    let _ = admin_db.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
