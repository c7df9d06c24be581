//! CIDR set arithmetic for diffs: difference of two lists of networks.

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
}
