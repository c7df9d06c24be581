//! The OpenAPI document built from the API types: every `$ref` resolves, and the reference
//! validators from PyPI (`openapi-spec-validator`, and `openapi-schema-validator` for the
//! examples) accept it, in a private virtualenv under cargo's target directory. A test that
//! cannot make that virtualenv fails, loudly: it never passes without the validator.

use fleetwall_server::{api, openapi};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi/check.py");

fn doc() -> Value {
    serde_json::from_str(&api::OPENAPI).expect("the document is JSON")
}

/// Every `$ref` target of the document, with how often it is used.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r.clone());
            }
            o.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn every_ref_in_the_document_resolves() {
    let doc = doc();
    assert_eq!(openapi::dangling_refs(&doc), Vec::<String>::new());
    let mut all = Vec::new();
    refs(&doc, &mut all);
    // The checker found references to check: bodies, the error response, the fleet file's
    // own schemas.
    assert!(all.len() > 100, "only {} $refs", all.len());
    for expected in [
        "#/components/responses/Error",
        "#/components/schemas/ErrorBody",
        "#/components/schemas/FleetFile",
        "#/components/schemas/FleetFile.Service",
        "#/components/schemas/FleetFile.IpFilterEntry",
        "#/components/schemas/NodeRuleset",
    ] {
        assert!(all.iter().any(|r| r == expected), "no $ref to {expected}");
    }
    // And it does find a broken one.
    let mut broken = doc.clone();
    broken["paths"]["/v1/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        json!({"$ref": "#/components/schemas/StatusVeiw"});
    assert_eq!(
        openapi::dangling_refs(&broken),
        vec!["#/paths/~1v1~1status/get/responses/200/content/application~1json/schema: $ref \"#/components/schemas/StatusVeiw\""]
    );
}

#[test]
fn every_schema_is_used_and_the_fleet_file_is_the_parsers() {
    let doc = doc();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        let r = format!("#/components/schemas/{name}");
        assert!(all.contains(&r), "schema {name} is never used");
    }
    // The fleet file's schema is the one `fleetwall schema` prints, its $defs moved.
    let parser = fleetwall_model::schema::fleet_file_schema();
    let embedded = &doc["components"]["schemas"]["FleetFile"];
    assert_eq!(embedded["required"], parser["required"]);
    assert_eq!(embedded["additionalProperties"], false);
    let defs = parser["$defs"].as_object().unwrap();
    for (name, def) in defs {
        let here = &doc["components"]["schemas"][format!("FleetFile.{name}")];
        assert_eq!(here["properties"].as_object().map(|p| p.len()), def["properties"].as_object().map(|p| p.len()));
        assert_eq!(here["description"], def["description"], "FleetFile.{name}");
    }
    // The API's views and create bodies carry the stored object's fields.
    let service = &doc["components"]["schemas"]["Service"]["properties"];
    for field in defs["Service"]["properties"].as_object().unwrap().keys() {
        assert!(service.get(field).is_some(), "Service lacks the stored field {field}");
    }
    let create = &doc["components"]["schemas"]["ServiceCreate"];
    assert_eq!(create["required"], json!(["name", "type", "cloud"]), "a service is created without nodes");
}

#[test]
fn public_routes_need_no_token_and_the_others_a_bearer_token() {
    let doc = doc();
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (method, path) in api::ROUTES {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        let public = matches!(*path, "/healthz" | "/openapi.json" | "/metrics");
        assert_eq!(op.get("security") == Some(&json!([])), public, "{method} {path}: {op}");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
        assert!(op["description"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no description");
        assert!(op["tags"].as_array().is_some_and(|t| t.len() == 1), "{method} {path} has no tag");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.keys().any(|c| c.starts_with('2')), "{method} {path} has no success response");
        if !public {
            assert_eq!(responses["401"], json!({"$ref": "#/components/responses/Error"}), "{method} {path}");
        }
    }
}

/// The virtualenv's python with the validators, made once (`python3 -m venv`, `pip install`).
fn python() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi-venv");
        let python = dir.join("bin/python");
        let ready = |p: &Path| {
            Command::new(p)
                .args(["-c", "import openapi_spec_validator, openapi_schema_validator"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ready(&python) {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&dir),
                "python3 -m venv (Debian: apt-get install python3-venv)",
            );
            run(
                Command::new(dir.join("bin/pip")).args(["install", "--quiet", "openapi-spec-validator>=0.7,<1"]),
                "pip install openapi-spec-validator",
            );
            assert!(ready(&python), "the validators are not importable in {} after pip install", dir.display());
        }
        python
    })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("the OpenAPI validator is needed for this test: cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "the OpenAPI validator is needed for this test: {what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `check.py MODE` on `doc`: whether it passed, and what it printed.
fn check(mode: &str, doc: &Value, tag: &str) -> (bool, String) {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("openapi-{tag}-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    let out = Command::new(python()).arg(CHECK).arg(mode).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn openapi_spec_validator_accepts_the_document_and_refuses_a_broken_one() {
    let doc = doc();
    let (ok, text) = check("spec", &doc, "good");
    assert!(ok, "openapi-spec-validator refused the document:\n{text}");
    assert!(text.contains("valid OpenAPI 3.1.0: 40 paths"), "{text}");
    // The validator really looks: a required field missing, a bad parameter location.
    let mut broken = doc.clone();
    broken["info"].as_object_mut().unwrap().remove("title");
    broken["paths"]["/v1/audit"]["get"]["parameters"][0]["in"] = json!("body");
    let (ok, text) = check("spec", &broken, "broken");
    assert!(!ok, "a broken document passed:\n{text}");
    assert!(text.contains("title"), "{text}");
}

#[test]
fn the_documented_examples_match_their_schemas() {
    let doc = doc();
    let (ok, text) = check("examples", &doc, "examples");
    assert!(ok, "{text}");
    assert!(text.contains("11 examples match their schemas"), "{text}");
    let mut broken = doc.clone();
    broken["components"]["schemas"]["TokenCreate"]["example"]["kind"] = json!("root");
    broken["components"]["schemas"]["ServiceCreate"]["example"]["nodes"]["pg-main-1"]["privat"] = json!("10.0.0.1");
    let (ok, text) = check("examples", &broken, "examples-broken");
    assert!(!ok, "{text}");
    assert!(text.contains("TokenCreate.example['kind']: 'root' is not one of"), "{text}");
    assert!(text.contains("ServiceCreate.example['nodes']['pg-main-1']"), "{text}");
}
