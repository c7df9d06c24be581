//! The cloud regions fleetwall knows, per provider, as data (`catalog/clouds.yaml`,
//! embedded at build time).
//!
//! A cloud name is a provider prefix and a region (`aws-` + `eu-west-1`). The prefix
//! decides behaviour (private links, Azure's platform addresses) and must be known; the
//! region only names where the service runs, so an unlisted one is a warning with a
//! "did you mean" (a typo such as `aws-eu-wst-1`), never an error: providers open
//! regions faster than this list is edited.

use crate::fleet::Provider;
use crate::yaml::{self, NodeKind};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The region list compiled into the binary.
pub const KNOWN_REGIONS: &str = include_str!("../../../catalog/clouds.yaml");

fn table() -> &'static BTreeMap<String, Vec<String>> {
    static TABLE: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let root = yaml::parse(KNOWN_REGIONS).expect("the embedded region list is YAML (tested)");
        let NodeKind::Map(pairs) = root.kind else { return BTreeMap::new() };
        pairs
            .into_iter()
            .filter_map(|(k, v)| {
                let NodeKind::Scalar { text: provider, .. } = k.kind else { return None };
                let NodeKind::Seq(items) = v.kind else { return None };
                let regions = items
                    .into_iter()
                    .filter_map(|i| match i.kind {
                        NodeKind::Scalar { text, .. } => Some(text),
                        _ => None,
                    })
                    .collect();
                Some((provider, regions))
            })
            .collect()
    })
}

/// The known regions of `provider` (without the prefix: `eu-west-1`).
pub fn regions(provider: Provider) -> &'static [String] {
    table().get(provider.as_str()).map(Vec::as_slice).unwrap_or_default()
}

/// Whether `region` (without the prefix) is a known region of `provider`.
pub fn is_known(provider: Provider, region: &str) -> bool {
    regions(provider).iter().any(|r| r == region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_its_regions_listed() {
        for (_, p) in Provider::PREFIXES {
            assert!(regions(p).len() >= 5, "{} has {} regions", p.as_str(), regions(p).len());
        }
        assert!(is_known(Provider::Aws, "eu-west-1"));
        assert!(is_known(Provider::Google, "europe-west1"));
        assert!(is_known(Provider::Azure, "westeurope"));
        assert!(!is_known(Provider::Aws, "eu-wst-1"));
        assert!(!is_known(Provider::Google, "eu-west-1"), "regions are per provider");
    }
}
