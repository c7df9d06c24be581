//! The fleet model: the fleet file v1 read with source spans, validated into a typed
//! `Fleet`, and the service catalog it is checked against.
//!
//! `load` is the one entry point: text → YAML tree → raw values → validated fleet, with
//! every problem collected in `Diagnostics` on the way.

pub mod catalog;
pub mod cidr;
pub mod deployment;
pub mod diag;
pub mod doc;
pub mod edit;
pub mod fleet;
pub mod ops;
pub mod ports;
pub mod raw;
pub mod regions;
pub mod schema;
pub mod scope;
pub mod validate;
pub mod yaml;

pub use catalog::{Catalog, Protocol};
pub use diag::{DiagCode, Diagnostic, Diagnostics, Severity};
pub use fleet::*;
pub use validate::{is_valid_name, NAME_RULE};

/// Parses and validates a fleet file. Returns the fleet when there is no error; the
/// diagnostics (errors and warnings, sorted by position) in both cases.
pub fn load(src: &str, catalog: &Catalog) -> (Option<Fleet>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let fleet = match yaml::parse(src) {
        Ok(root) => {
            let raw = raw::decode(&root, &mut diags);
            validate::validate(&raw, catalog, &mut diags)
        }
        Err(d) => {
            diags.push(d);
            None
        }
    };
    diags.sort();
    let fleet = if diags.has_errors() { None } else { fleet };
    (fleet, diags)
}

/// Validates a fleet document exactly as `load` validates a fleet file; every diagnostic
/// carries the document path of what it is about.
pub fn validate_doc(doc: &doc::FleetDoc, catalog: &Catalog) -> (Option<Fleet>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut paths = doc::PathTable::default();
    let root = doc.to_node(&mut paths);
    let raw = raw::decode(&root, &mut diags);
    let fleet = validate::validate_located(&raw, catalog, Some(&paths), &mut diags);
    paths.locate(&mut diags);
    diags.sort();
    let fleet = if diags.has_errors() { None } else { fleet };
    (fleet, diags)
}
