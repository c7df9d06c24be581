//! What the control plane's integration tests share: a server over real HTTP on a
//! scratch SQLite file (or a PostgreSQL URL), with an admin token.
#![allow(dead_code)]

use fleetwall_api::http::Client;
use fleetwall_server::web::Server;
use fleetwall_server::{api, ControlPlane};
use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Env {
    pub dir: PathBuf,
    pub server: Option<Server>,
    pub admin: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn catalog() -> fleetwall_model::Catalog {
    fleetwall_model::Catalog::builtin()
}

pub fn start(tag: &str, db: Option<String>) -> Env {
    let dir = std::env::temp_dir().join(format!("fw-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = db.unwrap_or_else(|| dir.join("fleet.db").display().to_string());
    let cp = ControlPlane::open(&url, catalog()).unwrap();
    let admin = fleetwall_server::util::new_token().unwrap();
    cp.insert_token(None, "admin", "admin", &admin, None).unwrap();
    let server = api::serve(cp.clone(), "127.0.0.1:0", None).unwrap();
    Env { dir, server: Some(server), admin }
}

impl Env {
    pub fn url(&self) -> String {
        format!("http://{}", self.server.as_ref().unwrap().local_addr())
    }
    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url(), None).unwrap().with_token(token)
    }
    pub fn admin(&self) -> Client {
        self.client(&self.admin)
    }
}
