//! Port allocation (S2): every listener of a service gets a port in 10000–30000.
//!
//! The port is `base + offset`, wrapped into the range, where the offset comes from the
//! catalog and `base` is the project's `base_port` or, without one, a pseudo-random base
//! derived from the project and service names. This makes the allocation a pure
//! function: the same fleet always yields the same ports, offsets are unique within a
//! type so one node's listeners never collide, and adding a service, node or component
//! never moves an existing port. Pins override; collisions they cause are reported by
//! validation, which is why allocation lives in the model and not in the compiler.

use crate::catalog::ServiceType;
use crate::fleet::ListenerKey;
use std::collections::BTreeMap;

/// The lowest port a listener may get.
pub const PORT_MIN: u16 = 10000;
/// The highest port a listener may get.
pub const PORT_MAX: u16 = 30000;

/// The lowest port of the pool private-link connections get their own ports from.
pub const CONNECTION_PORT_MIN: u16 = 10000;
/// The highest port of the connection pool.
pub const CONNECTION_PORT_MAX: u16 = 31000;

/// The ports a new private-link connection of `service` gets: for each component with a
/// private-link port of its own (Kafka brokers), the lowest port of the pool that no
/// listener of the service's nodes, no other connection and no management or web port
/// uses. A connection keeps its ports as long as it exists (they are stored with it),
/// so allocating never moves or reuses a port in use. `None` when the pool is exhausted.
pub fn connection_ports(
    service: &crate::fleet::Service,
    platform: &crate::fleet::Platform,
) -> Option<BTreeMap<String, u16>> {
    let mut used: std::collections::BTreeSet<u16> = service.ports.values().copied().collect();
    used.extend([platform.ssh_port, platform.platform_port, platform.web_port]);
    for c in service.privatelink.iter().flat_map(|l| &l.connections) {
        used.extend(c.ports.values().copied());
    }
    let mut out = BTreeMap::new();
    for c in service.service_type.components.iter().filter(|c| c.privatelink_offset.is_some()) {
        let port = (CONNECTION_PORT_MIN..=CONNECTION_PORT_MAX).find(|p| !used.contains(p))?;
        used.insert(port);
        out.insert(c.name.clone(), port);
    }
    Some(out)
}

/// The base of a service: the project's `base_port`, or a stable pseudo-random one.
pub fn service_base(base_port: Option<u16>, project: &str, service: &str) -> u16 {
    base_port.unwrap_or_else(|| {
        let span = u64::from(PORT_MAX - PORT_MIN) + 1;
        PORT_MIN + (fnv1a(format!("{project}/{service}").as_bytes()) % span) as u16
    })
}

/// `base + offset`, wrapped into 10000–30000.
pub fn offset_port(base: u16, offset: u16) -> u16 {
    let span = u32::from(PORT_MAX - PORT_MIN) + 1;
    PORT_MIN + ((u32::from(base - PORT_MIN) + u32::from(offset)) % span) as u16
}

/// The allocated port of every listener of a type (before pins).
pub fn allocate(ty: &ServiceType, base: u16) -> BTreeMap<ListenerKey, u16> {
    let mut ports = BTreeMap::new();
    for c in &ty.components {
        if let Some(o) = c.offset {
            ports.insert(ListenerKey::Component(c.name.clone()), offset_port(base, o));
        }
        if let Some(o) = c.privatelink_offset {
            ports.insert(ListenerKey::ComponentPrivatelink(c.name.clone()), offset_port(base, o));
        }
    }
    for l in &ty.cluster {
        ports.insert(ListenerKey::Cluster(l.name.clone()), offset_port(base, l.offset));
    }
    ports
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn offsets_wrap_inside_the_range() {
        assert_eq!(offset_port(12000, 691), 12691);
        assert_eq!(offset_port(30000, 0), 30000);
        assert_eq!(offset_port(30000, 1), 10000);
        assert_eq!(offset_port(29900, 691), 10590);
    }

    #[test]
    fn random_base_is_stable_and_in_range() {
        let a = service_base(None, "acme", "pg-main");
        assert_eq!(a, service_base(None, "acme", "pg-main"));
        assert_ne!(a, service_base(None, "acme", "pg-other"));
        for i in 0..1000 {
            let b = service_base(None, "p", &format!("s{i}"));
            assert!((PORT_MIN..=PORT_MAX).contains(&b));
        }
        assert_eq!(service_base(Some(12000), "acme", "pg-main"), 12000);
    }

    #[test]
    fn every_type_allocates_distinct_ports_at_every_base() {
        let cat = Catalog::builtin();
        for ty in cat.types.values() {
            for base in [PORT_MIN, 12000, 29990, PORT_MAX] {
                let ports = allocate(ty, base);
                let mut seen: Vec<u16> = ports.values().copied().collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), ports.len(), "{} at {base}", ty.name);
                assert!(seen.iter().all(|p| (PORT_MIN..=PORT_MAX).contains(p)));
            }
        }
    }

    #[test]
    fn adding_a_component_never_moves_existing_ports() {
        let cat = Catalog::builtin();
        let mut ty = cat.types["pg"].clone();
        let before = allocate(&ty, 14000);
        ty.components.push(crate::catalog::Component {
            name: "new".into(),
            offset: Some(900),
            web: false,
            public: true,
            privatelink: true,
            privatelink_offset: None,
        });
        let after = allocate(&ty, 14000);
        for (k, p) in &before {
            assert_eq!(after[k], *p);
        }
        assert_eq!(after.len(), before.len() + 1);
    }
}
