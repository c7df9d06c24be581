//! CIDR arithmetic, in one place: intersection of two networks (the compiler scopes
//! ip_filter entries to a VPC with it), difference of two lists (diffs and the
//! management proof), and "everything".

use ipnet::IpNet;

/// `a − b`: the parts of `a` not covered by `b`, aggregated.
pub fn subtract(a: &[IpNet], b: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for x in a {
        let mut pieces = vec![*x];
        for y in b.iter().filter(|y| x.contains(*y) || y.contains(x)) {
            pieces = pieces.into_iter().flat_map(|p| remove(p, y)).collect();
        }
        out.extend(pieces);
    }
    IpNet::aggregate(&out)
}

/// The intersection of two networks (prefix networks either nest or are disjoint).
pub fn intersect(a: &IpNet, b: &IpNet) -> Option<IpNet> {
    if a.contains(b) {
        Some(*b)
    } else if b.contains(a) {
        Some(*a)
    } else {
        None
    }
}

/// `p − y` for one network.
fn remove(p: IpNet, y: &IpNet) -> Vec<IpNet> {
    if y.contains(&p) {
        Vec::new()
    } else if p.contains(y) {
        p.subnets(p.prefix_len() + 1).expect("longer prefix exists").flat_map(|half| remove(half, y)).collect()
    } else {
        vec![p]
    }
}

/// Whether `nets` covers every address of a family (holds a /0).
pub fn is_everything(nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.prefix_len() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|x| x.parse().unwrap()).collect()
    }

    #[test]
    fn subtraction_splits_around_holes() {
        let d = subtract(&nets(&["10.0.0.0/24"]), &nets(&["10.0.0.0/26"]));
        assert_eq!(d, nets(&["10.0.0.64/26", "10.0.0.128/25"]));
        assert_eq!(subtract(&nets(&["10.0.0.0/24"]), &nets(&["10.0.0.0/8"])), vec![]);
        assert_eq!(subtract(&nets(&["10.0.0.0/24", "::/0"]), &nets(&["192.0.2.0/24"])), nets(&["10.0.0.0/24", "::/0"]));
        assert_eq!(subtract(&nets(&["0.0.0.0/0"]), &nets(&["128.0.0.0/1"])), nets(&["0.0.0.0/1"]));
    }

    #[test]
    fn intersection_of_nested_disjoint_and_cross_family_networks() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(intersect(&n("10.0.0.0/8"), &n("10.30.0.0/20")), Some(n("10.30.0.0/20")));
        assert_eq!(intersect(&n("10.30.0.0/20"), &n("10.0.0.0/8")), Some(n("10.30.0.0/20")));
        assert_eq!(intersect(&n("10.0.0.0/16"), &n("10.1.0.0/16")), None);
        assert_eq!(intersect(&n("0.0.0.0/0"), &n("::/0")), None);
    }
}
