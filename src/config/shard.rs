//! `[shard]` of promfed.toml: the hosts that share the clusters, this
//! host's name among them, and how many scrape each cluster.

use super::names::LabelName;
use super::toml_fields::{Fields, Problems};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSettings {
    /// Every host's name, the same list on every host.
    pub members: Vec<String>,
    /// This host's name (`self`); one of `members`.
    pub me: String,
    /// How many hosts scrape each cluster.
    pub replication: usize,
    /// The `external_labels` key that tells replicas apart (replication ≥ 2).
    pub replica_label: String,
}

impl ShardSettings {
    /// The hosts that scrape `cluster`.
    pub fn owners(&self, cluster: &str) -> Vec<&str> {
        crate::shard::Ring::new(&self.members, self.replication).owners(cluster)
    }

    /// Whether this host scrapes `cluster`.
    pub fn is_mine(&self, cluster: &str) -> bool {
        self.owners(cluster).contains(&self.me.as_str())
    }
}

mod defaults {
    pub const REPLICATION: usize = 1;
    pub const REPLICA_LABEL: &str = "replica";
}

/// Reads and checks `[shard]`; `None` when there is none (or it is
/// invalid, which is reported).
pub fn read(root: &mut Fields, p: &mut Problems) -> Option<ShardSettings> {
    let mut t = root.table(p, "shard")?;
    let members = t.string_list(p, "members");
    let me = t.get::<String>(p, "self");
    let replication = t.get::<i64>(p, "replication");
    let replica_label = t.get::<String>(p, "replica_label");
    let table = t.span();
    t.finish(p);
    let errors_before = p.len();

    let mut listed: Vec<String> = Vec::new();
    match &members {
        None => p.missing_in(
            table.clone(),
            "shard.members",
            "missing: every host's name, the same list on every host, e.g. members = [\"mon-a\", \"mon-b\"]",
        ),
        Some(list) if list.value.is_empty() => p.at(
            list.span.clone(),
            "shard.members",
            "is empty: list every host's name, this one's included",
        ),
        Some(list) => {
            for (i, m) in list.value.iter().enumerate() {
                if let Some(why) = member_problem(&m.value, &listed) {
                    p.at(m.span.clone(), &format!("shard.members[{i}]"), why);
                } else {
                    listed.push(m.value.clone());
                }
            }
        }
    }
    let me = match me {
        None => {
            p.missing_in(
                table.clone(),
                "shard.self",
                "missing: this host's name, one of members",
            );
            None
        }
        Some(me) if !listed.is_empty() && !listed.contains(&me.value) => {
            p.at(
                me.span,
                "shard.self",
                format!(
                    "`{}` is not in members ({}): every host lists every host, itself included",
                    me.value,
                    listed.join(", ")
                ),
            );
            None
        }
        Some(me) => Some(me.value),
    };
    let replication = match replication {
        None => defaults::REPLICATION,
        Some(r) => match usize::try_from(r.value) {
            Ok(n) if n >= 1 && (listed.is_empty() || n <= listed.len()) => n,
            Ok(0) | Err(_) => {
                p.at(
                    r.span,
                    "shard.replication",
                    "must be at least 1 (1 = each cluster scraped by one host)",
                );
                defaults::REPLICATION
            }
            Ok(n) => {
                p.at(
                    r.span,
                    "shard.replication",
                    format!(
                        "{n} is more than the {} members: no cluster can be scraped by {n} hosts",
                        listed.len()
                    ),
                );
                defaults::REPLICATION
            }
        },
    };
    let replica_label = match replica_label {
        None => defaults::REPLICA_LABEL.to_string(),
        Some(l) => match LabelName::parse(&l.value) {
            Ok(name) => name.as_str().to_string(),
            Err(e) => {
                p.at(l.span, "shard.replica_label", e);
                defaults::REPLICA_LABEL.to_string()
            }
        },
    };
    if p.len() > errors_before {
        return None;
    }
    Some(ShardSettings {
        members: listed,
        me: me?,
        replication,
        replica_label,
    })
}

/// What is wrong with `name` as the next of `members` after `listed`
/// (shared with `shard-plan --members`).
pub fn member_problem(name: &str, listed: &[String]) -> Option<String> {
    if !is_host_name(name) {
        return Some(format!(
            "`{name}` is not a host name: use letters, digits, `-`, `_` and `.`"
        ));
    }
    listed.iter().any(|m| m == name).then(|| {
        format!(
            "`{name}` is listed twice: each host once, or the assignment would differ between hosts"
        )
    })
}

/// A host's name as members lists it: what a hostname or a pod name can be.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
