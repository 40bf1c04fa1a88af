//! `promfed shard-plan`: which host scrapes which cluster, and with
//! another member list, what would move. Read-only.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::config::inventory;
use crate::config::last_good::LastGood;
use crate::config::settings::Settings;
use crate::shard::{self, Ring};

#[derive(Serialize)]
struct Table<'a> {
    members: &'a [String],
    replication: usize,
    plan: &'a BTreeMap<&'a str, Vec<&'a str>>,
}

#[derive(Serialize)]
struct Change<'a> {
    #[serde(flatten)]
    table: Table<'a>,
    /// (cluster, host) assignments the new members add and drop.
    gained: &'a [(&'a str, &'a str)],
    lost: &'a [(&'a str, &'a str)],
    /// The share of today's assignments that would move.
    moved_fraction: f64,
}

#[derive(Serialize)]
struct Plan<'a> {
    #[serde(rename = "self")]
    me: Option<&'a str>,
    /// How long the current table took to compute, for the benchmark.
    assign_ms: f64,
    #[serde(flatten)]
    now: Table<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    with: Option<Change<'a>>,
}

/// The list `--members` gives, held to the rules of `[shard] members`: host
/// names, none twice, at least as many as the replication.
pub fn members_argument(given: Vec<String>, replication: usize) -> Result<Vec<String>, String> {
    let mut members: Vec<String> = Vec::new();
    for name in given {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err("--members: an empty name (two commas in a row, or one at an end)".into());
        }
        if let Some(why) = crate::config::shard::member_problem(&name, &members) {
            return Err(format!("--members: {why} (names go between commas)"));
        }
        members.push(name);
    }
    if members.len() < replication {
        return Err(format!(
            "--members: replication = {replication} needs at least {replication} members, and {} {} given",
            members.len(),
            if members.len() == 1 { "is" } else { "are" }
        ));
    }
    Ok(members)
}

/// Prints the plan; `with` is another member list (already checked by
/// `members_argument`) to compare with.
pub fn print(settings: &Settings, with: Option<Vec<String>>, json: bool) -> Result<(), String> {
    let (members, replication, me) = match &settings.shard {
        Some(s) => (s.members.clone(), s.replication, Some(s.me.as_str())),
        None => match &with {
            Some(_) => (Vec::new(), 1, None),
            None => {
                return Err(format!(
                    "{} has no [shard]: this host scrapes every cluster. Give --members to see how they would be shared",
                    settings.source.display()
                ));
            }
        },
    };
    let inventory = inventory::load(
        &settings.clusters_dir,
        &settings.defaults,
        &LastGood::new(&settings.last_good_dir()),
        &settings.prometheus.user,
    )
    .map_err(|d| d.headline())?;
    let names: Vec<&str> = inventory.names().into_iter().map(|n| n.as_str()).collect();
    let started = std::time::Instant::now();
    let now = Ring::new(&members, replication).plan(names.iter().copied());
    let assign_ms = started.elapsed().as_secs_f64() * 1000.0;
    let new_members = with.unwrap_or_default();
    let change = (!new_members.is_empty()).then(|| {
        let later = Ring::new(&new_members, replication).plan(names.iter().copied());
        let moved = shard::moves(&now, &later);
        (later, moved)
    });
    if json {
        let plan = Plan {
            me,
            assign_ms,
            now: Table {
                members: &members,
                replication,
                plan: &now,
            },
            with: change.as_ref().map(|(later, moved)| Change {
                table: Table {
                    members: &new_members,
                    replication,
                    plan: later,
                },
                gained: &moved.gained,
                lost: &moved.lost,
                moved_fraction: moved.fraction(),
            }),
        };
        say!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("the plan serialises")
        );
        return Ok(());
    }
    let mut out = String::new();
    if !members.is_empty() {
        let _ = writeln!(
            out,
            "{} {} ({}), each cluster scraped by {replication}{}",
            members.len(),
            crate::output::plural(members.len(), "member", "members"),
            members.join(", "),
            me.map_or(String::new(), |m| format!("; this host is {m}"))
        );
        table(&mut out, &now, &members);
    }
    if let Some((later, moved)) = &change {
        let _ = writeln!(out, "\nwith members {}:", new_members.join(", "));
        table(&mut out, later, &new_members);
        let mut by_cluster: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
        for (c, h) in &moved.gained {
            by_cluster.entry(c).or_default().0.push(h);
        }
        for (c, h) in &moved.lost {
            by_cluster.entry(c).or_default().1.push(h);
        }
        let _ = writeln!(out, "\nwhat moves:");
        for (c, (gained, lost)) in &by_cluster {
            let _ = writeln!(
                out,
                "  {c}: {} -> {}",
                if lost.is_empty() {
                    "-".to_string()
                } else {
                    lost.join(", ")
                },
                if gained.is_empty() {
                    "-".to_string()
                } else {
                    gained.join(", ")
                }
            );
        }
        let _ = writeln!(
            out,
            "{} of {} (cluster, host) assignments move ({:.1} %)",
            moved.lost.len(),
            moved.before,
            moved.fraction() * 100.0
        );
    }
    say_raw!("{out}");
    Ok(())
}

/// One line per cluster, then each member's count.
fn table(out: &mut String, plan: &BTreeMap<&str, Vec<&str>>, members: &[String]) {
    let width = plan.keys().map(|c| c.len()).max().unwrap_or(7).max(7);
    let _ = writeln!(out, "  {:width$}  hosts", "cluster");
    for (c, owners) in plan {
        let _ = writeln!(out, "  {c:width$}  {}", owners.join(", "));
    }
    let counts: Vec<String> = members
        .iter()
        .map(|m| {
            let n = plan.values().filter(|o| o.contains(&m.as_str())).count();
            format!("{m} {n}")
        })
        .collect();
    let _ = writeln!(out, "  clusters per host: {}", counts.join(", "));
}
