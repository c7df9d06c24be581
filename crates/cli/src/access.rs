//! `fleetwall access`: operator SSH access on the control plane (S10) — ask, approve,
//! deny, list, revoke, fetch the certificate; the platform's settings and the SSH CA.

use crate::commands::Outcome;
use crate::control::{self, ApiFailure, ClientArgs};
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use fleetwall_api::http::percent_encode as enc;
use fleetwall_server::access::{AccessCertificate, AccessList, AccessRequest, AccessSettings, SshCaList};
use serde_json::{json, Value};
use std::path::PathBuf;

/// How a verb prints.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// For people.
    Table,
    /// The server's JSON.
    Json,
}

/// `access` verbs.
#[derive(Subcommand)]
pub enum AccessCmd {
    /// Ask for SSH access (operator token): to one node, or every node of a service.
    Request {
        /// One node.
        #[arg(long, conflicts_with = "service", required_unless_present = "service")]
        node: Option<String>,
        /// Every node of this service: PROJECT/SERVICE.
        #[arg(long, value_name = "PROJECT/SERVICE")]
        service: Option<String>,
        /// Why (the approvers see it; the audit log keeps it).
        #[arg(long)]
        reason: String,
        /// The window: a number with s, m, h or d (`2h`); at most the platform's maximum.
        #[arg(long = "for", value_name = "DURATION", value_parser = control::parse_ttl)]
        duration: i64,
        /// Your ed25519 public key (`~/.ssh/id_ed25519.pub`).
        #[arg(long, value_name = "FILE.pub")]
        key: PathBuf,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Approve a request (security token; a project token for its customer approval).
    Approve {
        /// The request id (acc-N).
        id: String,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Deny a pending request.
    Deny {
        /// The request id (acc-N).
        id: String,
        /// Why not.
        #[arg(long)]
        reason: Option<String>,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The requests you may see (`--active`: who has access now).
    List {
        /// Only certificates in force now.
        #[arg(long)]
        active: bool,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One request in full.
    Show {
        /// The request id (acc-N).
        id: String,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke access at once (or withdraw a pending request).
    Revoke {
        /// The request id (acc-N).
        id: String,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The signed certificate: save it as `id_ed25519-cert.pub` next to your key.
    Cert {
        /// The request id (acc-N).
        id: String,
        /// Write it to this file (0644) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The platform's access settings (admin changes them).
    Settings {
        /// Login names every certificate is valid for (comma-separated).
        #[arg(long, value_delimiter = ',')]
        principals: Option<Vec<String>>,
        /// The longest window (`8h`).
        #[arg(long, value_parser = control::parse_ttl)]
        max_duration: Option<i64>,
        /// How long a request may wait for approval (`1h`).
        #[arg(long, value_parser = control::parse_ttl)]
        pending_ttl: Option<i64>,
        /// The projects whose customer approves too (comma-separated; `""`: none).
        #[arg(long, value_delimiter = ',')]
        customer_approval: Option<Vec<String>>,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The SSH CA: list, rotate (admin) or retire an old key (admin).
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
}

/// `access ca` verbs.
#[derive(Subcommand)]
pub enum CaCmd {
    /// The trusted CA keys; the last one signs.
    List {
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// A new CA key signs from now on; the old ones stay trusted until retired.
    Rotate {
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Stop trusting an old CA key: its certificates stop working.
    Retire {
        /// The key's id (`access ca list`).
        id: i64,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn rows(list: &[AccessRequest]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let target = match &r.node {
                Some(n) => n.clone(),
                None => format!("{}/{}", r.project, r.service),
            };
            let until = r.valid_before.clone().unwrap_or_else(|| format!("approve by {}", r.approve_by));
            vec![r.id.clone(), r.state.clone(), r.requester.clone(), target, until, r.reason.clone()]
        })
        .collect();
    control::print_rows(&["ID", "STATE", "REQUESTER", "TARGET", "UNTIL", "REASON"], &rows);
}

fn one(v: Value, json_out: bool) -> Result<()> {
    if json_out {
        control::show(&v);
        return Ok(());
    }
    let r: AccessRequest = control::typed(v)?;
    rows(std::slice::from_ref(&r));
    let mut more = Vec::new();
    if let Some(b) = &r.approved_by {
        more.push(format!("approved by {b}"));
    }
    if let Some(b) = &r.customer_approved_by {
        more.push(format!("customer approval by {b}"));
    }
    if r.customer_approval && r.customer_approved_by.is_none() && r.state == "pending" {
        more.push("waiting for the customer's approval".into());
    }
    if let Some(b) = &r.denied_by {
        more.push(format!("denied by {b}"));
    }
    if let (Some(s), Some(a), Some(b)) = (r.serial, &r.valid_after, &r.valid_before) {
        more.push(format!(
            "certificate serial {s}, valid {a} to {b}, as {}, from {}",
            r.principals.join(","),
            r.source_addresses.join(",")
        ));
    }
    if let Some(b) = &r.revoked_by {
        more.push(format!("revoked by {b} at {}", r.revoked_at.clone().unwrap_or_default()));
    }
    for m in more {
        println!("  {m}");
    }
    Ok(())
}

fn ca(v: Value, json_out: bool) -> Result<()> {
    if json_out {
        control::show(&v);
        return Ok(());
    }
    let list: SshCaList = control::typed(v)?;
    let rows: Vec<Vec<String>> = list
        .keys
        .into_iter()
        .map(|k| {
            vec![k.id.to_string(), k.fingerprint, k.created_at, if k.signing { "yes".into() } else { String::new() }]
        })
        .collect();
    control::print_rows(&["ID", "FINGERPRINT", "CREATED", "SIGNS"], &rows);
    Ok(())
}

/// Runs an `access` verb.
pub fn run(args: &ClientArgs, cmd: AccessCmd) -> Result<Outcome> {
    let api = control::Api::new(args)?;
    let json_of = |f: Format| f == Format::Json || args.json;
    let path = |id: &str, verb: &str| format!("/v1/access/{}{verb}", enc(id));
    match cmd {
        AccessCmd::Request { node, service, reason, duration, key, format } => {
            let public_key = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read the public key {}", key.display()))?;
            let mut body = json!({ "reason": reason, "duration_s": duration, "public_key": public_key.trim() });
            match (node, service) {
                (Some(n), None) => body["node"] = json!(n),
                (None, Some(s)) => {
                    let Some((p, s)) = s.split_once('/') else { bail!("--service {s}: expected PROJECT/SERVICE") };
                    body["project"] = json!(p);
                    body["service"] = json!(s);
                }
                _ => bail!("give --node NODE or --service PROJECT/SERVICE"),
            }
            one(api.call("POST", "/v1/access", Some(&body))?, json_of(format))?
        }
        AccessCmd::Approve { id, format } => one(api.call("POST", &path(&id, "/approve"), None)?, json_of(format))?,
        AccessCmd::Deny { id, reason, format } => {
            let body = json!({ "reason": reason });
            one(api.call("POST", &path(&id, "/deny"), Some(&body))?, json_of(format))?
        }
        AccessCmd::Revoke { id, format } => one(api.call("POST", &path(&id, "/revoke"), None)?, json_of(format))?,
        AccessCmd::Show { id, format } => one(api.call("GET", &path(&id, ""), None)?, json_of(format))?,
        AccessCmd::List { active, format } => {
            let v = api.call("GET", &format!("/v1/access?active={active}"), None)?;
            if json_of(format) {
                control::show(&v)
            } else {
                rows(&control::typed::<AccessList>(v)?.requests)
            }
        }
        AccessCmd::Cert { id, out, format } => {
            let v = api.call("GET", &path(&id, "/certificate"), None)?;
            if json_of(format) {
                control::show(&v);
                return Ok(Outcome::Ok);
            }
            let c: AccessCertificate = control::typed(v)?;
            match out {
                Some(file) => {
                    std::fs::write(&file, format!("{}\n", c.certificate))
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    eprintln!("{}: serial {}, valid {} to {}", file.display(), c.serial, c.valid_after, c.valid_before);
                }
                None => println!("{}", c.certificate),
            }
        }
        AccessCmd::Settings { principals, max_duration, pending_ttl, customer_approval, format } => {
            let edit =
                principals.is_some() || max_duration.is_some() || pending_ttl.is_some() || customer_approval.is_some();
            let v = if edit {
                let projects = customer_approval.map(|p| p.into_iter().filter(|x| !x.is_empty()).collect::<Vec<_>>());
                let body = json!({
                    "principals": principals, "max_duration_s": max_duration,
                    "pending_ttl_s": pending_ttl, "customer_approval": projects,
                });
                let body = Value::Object(
                    body.as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                );
                api.call("PUT", "/v1/access/settings", Some(&body))?
            } else {
                api.call("GET", "/v1/access/settings", None)?
            };
            if json_of(format) {
                control::show(&v)
            } else {
                let s: AccessSettings = control::typed(v)?;
                println!("principals         {}", s.principals.join(","));
                println!("max duration       {} s", s.max_duration_s);
                println!("pending ttl        {} s", s.pending_ttl_s);
                println!("customer approval  {}", s.customer_approval.join(","));
            }
        }
        AccessCmd::Ca { cmd: CaCmd::List { format } } => ca(api.call("GET", "/v1/access/ca", None)?, json_of(format))?,
        AccessCmd::Ca { cmd: CaCmd::Rotate { format } } => {
            ca(api.call("POST", "/v1/access/ca", None)?, json_of(format))?
        }
        AccessCmd::Ca { cmd: CaCmd::Retire { id, format } } => {
            ca(api.call("DELETE", &format!("/v1/access/ca/{id}"), None)?, json_of(format))?
        }
    }
    Ok(Outcome::Ok)
}

/// `fleetwall audit --access ID`: one access's whole story.
pub fn story(args: &ClientArgs, id: &str) -> Result<Outcome> {
    let api = control::Api::new(args)?;
    let v = api.call("GET", &format!("/v1/access/{}/audit", enc(id)), None)?;
    if args.json {
        control::show(&v);
        return Ok(Outcome::Ok);
    }
    let log: fleetwall_api::AuditLog = control::typed(v)?;
    if log.entries.is_empty() {
        return Err(ApiFailure(format!("no audit entries for {id}")).into());
    }
    for e in log.entries {
        let detail = match e.action.as_str() {
            "access.request" => format!(
                "{} for {}s: {}",
                e.after["node"].as_str().map(str::to_string).unwrap_or_else(|| format!(
                    "{}/{}",
                    e.after["project"].as_str().unwrap_or(""),
                    e.after["service"].as_str().unwrap_or("")
                )),
                e.after["duration_s"],
                e.after["reason"].as_str().unwrap_or("")
            ),
            "access.approve" => format!("as {}", e.after["role"].as_str().unwrap_or("")),
            "access.issue" => format!(
                "serial {}, {} to {}, from {}",
                e.after["serial"],
                e.after["valid_after"].as_str().unwrap_or(""),
                e.after["valid_before"].as_str().unwrap_or(""),
                e.after["source_addresses"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            ),
            "access.deny" => e.after["reason"].as_str().unwrap_or("").to_string(),
            "access.expire" | "access.end" => format!("at {}", e.after["at"].as_str().unwrap_or("")),
            _ => String::new(),
        };
        println!("{}  {:<15} {:<22} {detail}", e.at, e.action, e.actor);
    }
    Ok(Outcome::Ok)
}
