//! Which hosts scrape which cluster: rendezvous (highest-random-weight)
//! hashing of the cluster's name over the members. Every host computes
//! the same table from the same member list, with no coordination; adding
//! or removing one member moves only the assignments that member takes or
//! gives up, about 1/N of them.

use std::collections::BTreeMap;

/// The members and how many of them scrape each cluster.
#[derive(Debug, Clone)]
pub struct Ring<'a> {
    members: &'a [String],
    replication: usize,
}

impl<'a> Ring<'a> {
    /// `replication` is capped at the number of members.
    pub fn new(members: &'a [String], replication: usize) -> Ring<'a> {
        Ring {
            members,
            replication: replication.min(members.len()),
        }
    }

    /// The members that scrape `cluster`, highest weight first.
    pub fn owners(&self, cluster: &str) -> Vec<&'a str> {
        let mut weighted: Vec<(u64, &'a str)> = self
            .members
            .iter()
            .map(|m| (weight(m, cluster), m.as_str()))
            .collect();
        // Highest weight first; equal weights (never in practice) by name,
        // so that every host still agrees.
        weighted.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        weighted
            .into_iter()
            .take(self.replication)
            .map(|(_, m)| m)
            .collect()
    }

    /// The whole table: each cluster and its owners.
    pub fn plan<'c>(
        &self,
        clusters: impl IntoIterator<Item = &'c str>,
    ) -> BTreeMap<&'c str, Vec<&'a str>> {
        clusters.into_iter().map(|c| (c, self.owners(c))).collect()
    }
}

/// A cluster's weight on a member: the first 8 bytes of SHA-256 over
/// both names (length-prefixed, so no two pairs collide by concatenation).
/// A cryptographic hash because it must be the same on every host and in
/// every version of promfed, and spread well.
fn weight(member: &str, cluster: &str) -> u64 {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [member, cluster] {
        d.update(&(part.len() as u64).to_le_bytes());
        d.update(part.as_bytes());
    }
    let digest = d.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// What changes between two tables: the (cluster, host) assignments one
/// has and the other does not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moves<'a> {
    /// (cluster, host) pairs only the new table has.
    pub gained: Vec<(&'a str, &'a str)>,
    /// (cluster, host) pairs only the old table has.
    pub lost: Vec<(&'a str, &'a str)>,
    /// Assignments in the old table.
    pub before: usize,
}

impl Moves<'_> {
    /// The share of the old assignments that moved.
    pub fn fraction(&self) -> f64 {
        if self.before == 0 {
            0.0
        } else {
            self.lost.len() as f64 / self.before as f64
        }
    }
}

pub fn moves<'a>(
    old: &BTreeMap<&'a str, Vec<&'a str>>,
    new: &BTreeMap<&'a str, Vec<&'a str>>,
) -> Moves<'a> {
    let mut m = Moves {
        before: old.values().map(Vec::len).sum(),
        ..Moves::default()
    };
    for (cluster, was) in old {
        let now = new.get(cluster).map(Vec::as_slice).unwrap_or_default();
        m.lost.extend(
            was.iter()
                .filter(|h| !now.contains(h))
                .map(|h| (*cluster, *h)),
        );
        m.gained.extend(
            now.iter()
                .filter(|h| !was.contains(h))
                .map(|h| (*cluster, *h)),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("mon-{i:02}")).collect()
    }

    fn clusters(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cluster-{i:05}")).collect()
    }

    /// The simulation: 10,000 clusters over 20 hosts.
    #[test]
    fn ten_thousand_clusters_spread_evenly_over_twenty_hosts() {
        let (members, names) = (hosts(20), clusters(10_000));
        for replication in [1, 2, 3] {
            let ring = Ring::new(&members, replication);
            let plan = ring.plan(names.iter().map(String::as_str));
            let mut load: BTreeMap<&str, usize> = BTreeMap::new();
            for owners in plan.values() {
                assert_eq!(owners.len(), replication);
                let mut unique = owners.clone();
                unique.dedup();
                assert_eq!(unique.len(), replication, "distinct hosts");
                for o in owners {
                    *load.entry(o).or_default() += 1;
                }
            }
            let mean = (10_000 * replication) as f64 / 20.0;
            let max = *load.values().max().unwrap() as f64;
            assert!(
                max / mean <= 1.1,
                "replication {replication}: max/mean {:.3}",
                max / mean
            );
        }
    }

    /// A join moves about 1/(N+1) of the assignments (to the new host), a
    /// leave about 1/N (those of the host that left); within 10 % of the
    /// ideal, and nothing moves between the hosts that stay.
    #[test]
    fn a_join_or_a_leave_moves_about_the_ideal_share_and_no_more() {
        let names = clusters(10_000);
        let names = || names.iter().map(String::as_str);
        for replication in [1, 2] {
            let (twenty, twenty_one) = (hosts(20), hosts(21));
            let before = Ring::new(&twenty, replication).plan(names());
            let joined = Ring::new(&twenty_one, replication).plan(names());
            let join = moves(&before, &joined);
            let ideal = 1.0 / 21.0;
            assert!(
                (join.fraction() - ideal).abs() <= 0.1 * ideal,
                "join moved {:.4}, ideal {ideal:.4}",
                join.fraction()
            );
            assert!(join.gained.iter().all(|(_, h)| *h == "mon-20"));
            let nineteen: Vec<String> = twenty.iter().filter(|h| *h != "mon-07").cloned().collect();
            let left = Ring::new(&nineteen, replication).plan(names());
            let leave = moves(&before, &left);
            let ideal = 1.0 / 20.0;
            assert!(
                (leave.fraction() - ideal).abs() <= 0.1 * ideal,
                "leave moved {:.4}, ideal {ideal:.4}",
                leave.fraction()
            );
            assert!(leave.lost.iter().all(|(_, h)| *h == "mon-07"));
        }
    }

    #[test]
    fn the_table_does_not_depend_on_the_order_of_members() {
        let members = hosts(5);
        let mut shuffled = members.clone();
        shuffled.reverse();
        shuffled.swap(0, 2);
        let (a, b) = (Ring::new(&members, 2), Ring::new(&shuffled, 2));
        for c in clusters(200) {
            let (mut x, mut y) = (a.owners(&c), b.owners(&c));
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x, y, "{c}");
        }
        // A fixed point: the same names give the same owners in every
        // version; a change here would move every cluster of every user.
        assert_eq!(a.owners("prod"), ["mon-04", "mon-02"]);
    }
}
