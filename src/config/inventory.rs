//! All cluster files at once: each one parsed on its own, credentials checked,
//! duplicates refused, and a broken file replaced by its last good definition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cluster::{Broken, Cluster, Parsed};
use super::defaults::Defaults;
use super::diagnostic::{Diagnostic, SourceText};
use super::last_good::LastGood;
use super::names::ClusterName;
use super::shard::ShardSettings;
use crate::access::{self, Identity};

/// Files in the clusters folder that are never read.
const IGNORED_SUFFIXES: [&str; 9] = [
    "~",
    ".dpkg-old",
    ".dpkg-new",
    ".dpkg-dist",
    ".rpmnew",
    ".rpmsave",
    ".example",
    ".disabled",
    ".swp",
];

/// What became of one cluster file.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The file is valid: this is what gets applied. The text is kept as
    /// the last good definition once it is in force.
    Current(Cluster, String),
    /// The file is broken; the last applied definition stays in force.
    KeptLastGood(Cluster),
    /// The file is broken and there is nothing to keep.
    Broken {
        name: Option<ClusterName>,
        file: PathBuf,
    },
}

impl Entry {
    pub fn cluster(&self) -> Option<&Cluster> {
        match self {
            Entry::Current(c, _) | Entry::KeptLastGood(c) => Some(c),
            Entry::Broken { .. } => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Inventory {
    pub entries: Vec<Entry>,
    pub problems: Vec<Diagnostic>,
    pub warnings: Vec<String>,
    /// Valid clusters that other hosts scrape (`[shard]`).
    pub elsewhere: Vec<Elsewhere>,
}

/// A valid cluster this host does not scrape, and the hosts that do.
#[derive(Debug, Clone)]
pub struct Elsewhere {
    pub name: ClusterName,
    pub file: PathBuf,
    pub owners: Vec<String>,
}

impl Inventory {
    /// Keeps the clusters this host scrapes; the others, valid, go to
    /// `elsewhere` (a broken file stays, reported on every host alike).
    pub fn assign(&mut self, shard: &ShardSettings) {
        let mut kept = Vec::with_capacity(self.entries.len());
        for entry in std::mem::take(&mut self.entries) {
            let entry = self.without_replica_label(entry, shard);
            let Some(c) = entry.cluster() else {
                kept.push(entry);
                continue;
            };
            let owners = shard.owners(c.name.as_str());
            if owners.contains(&shard.me.as_str()) {
                kept.push(entry);
            } else {
                self.elsewhere.push(Elsewhere {
                    name: c.name.clone(),
                    file: c.source.clone(),
                    owners: owners.iter().map(|o| o.to_string()).collect(),
                });
            }
        }
        self.entries = kept;
    }

    /// With replicas, the replica label tells which host sent a sample; a
    /// cluster's own label of that name would win over the external label
    /// (Prometheus keeps a series' own labels) and hide it. Such a cluster
    /// is refused on every host alike, at the label's place.
    fn without_replica_label(&mut self, entry: Entry, shard: &ShardSettings) -> Entry {
        let label = shard.replica_label.as_str();
        let Some(c) = entry
            .cluster()
            .filter(|c| shard.replication >= 2 && c.labels.keys().any(|k| k.as_str() == label))
        else {
            return entry;
        };
        let key = format!("labels.{label}");
        let message = format!(
            "`{label}` is [shard]'s replica_label: with replication = {}, it tells which host sent a sample, and a cluster's own `{label}` label would hide that; rename this label (or set another replica_label)",
            shard.replication
        );
        self.problems.push(match &entry {
            Entry::Current(_, text) => {
                let source = SourceText::new(&c.source, text.clone());
                let span = label_key_span(text, label).unwrap_or(0..0);
                Diagnostic::at(&source, span, Some(&key), message)
            }
            _ => Diagnostic::file(&c.source, Some(&key), message),
        });
        Entry::Broken {
            name: Some(c.name.clone()),
            file: c.source.clone(),
        }
    }

    /// The clusters to render, in name order.
    pub fn clusters(&self) -> Vec<&Cluster> {
        let mut clusters: Vec<&Cluster> = self.entries.iter().filter_map(Entry::cluster).collect();
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        clusters
    }

    /// Holds a valid file's cluster back (the checking tool refuses its
    /// configuration): its last good definition stays in force, if it has a
    /// different one; else it is left out. Returns whether one was kept.
    pub fn hold_back(
        &mut self,
        name: &ClusterName,
        last_good: &LastGood,
        prometheus_user: &Identity,
    ) -> bool {
        let Some(at) = self
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Current(c, _) if &c.name == name))
        else {
            return false;
        };
        let Entry::Current(current, _) = &self.entries[at] else {
            return false;
        };
        let file = current.source.clone();
        let mut entry = keep_or_broken(
            last_good,
            Some(name.clone()),
            &file,
            prometheus_user,
            &mut self.problems,
        );
        if matches!(&entry, Entry::KeptLastGood(kept) if kept == current) {
            entry = Entry::Broken {
                name: Some(name.clone()),
                file,
            };
        }
        let kept = matches!(entry, Entry::KeptLastGood(_));
        self.entries[at] = entry;
        kept
    }

    /// Every cluster name that has a file, broken or not: their last good
    /// definitions must be kept.
    pub fn names(&self) -> Vec<&ClusterName> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Current(c, _) | Entry::KeptLastGood(c) => Some(&c.name),
                Entry::Broken { name, .. } => name.as_ref(),
            })
            .collect()
    }
}

/// Is this a file in the clusters folder that promfed should read?
pub fn is_cluster_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && name.ends_with(".toml")
        && !IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Reads every cluster file in `dir`, each with `defaults` under it.
/// `prometheus_user` is who must be able to read the credentials. A folder
/// that cannot be listed is an error.
pub fn load(
    dir: &Path,
    defaults: &Defaults,
    last_good: &LastGood,
    prometheus_user: &Identity,
) -> Result<Inventory, Diagnostic> {
    let mut inv = Inventory::default();
    // Not "every cluster was removed": only a folder that can be read and
    // no longer holds a cluster's file removes that cluster.
    let files = list_cluster_files(dir).map_err(|e| {
        Diagnostic::file(
            dir,
            None,
            format!("cannot list the clusters folder: {e}; nothing was changed"),
        )
    })?;
    let mut owners: BTreeMap<ClusterName, PathBuf> = BTreeMap::new();
    for file in files {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = match read_cluster_file(&file) {
            Ok(t) => t,
            Err(e) => {
                inv.problems
                    .push(Diagnostic::file(&file, None, format!("cannot read: {e}")));
                inv.entries.push(keep_or_broken(
                    last_good,
                    ClusterName::parse(&stem).ok(),
                    &file,
                    prometheus_user,
                    &mut inv.problems,
                ));
                continue;
            }
        };
        let source = SourceText::new(&file, text);
        let parsed =
            Cluster::parse_with(&source, &stem, defaults).and_then(
                |parsed| match check_credentials(
                    &parsed,
                    prometheus_user,
                    &source,
                    &mut inv.warnings,
                ) {
                    Ok(()) => Ok(parsed),
                    Err(problems) => Err(Broken {
                        name: Some(parsed.cluster.name),
                        problems,
                    }),
                },
            );
        match parsed {
            Ok(Parsed { cluster: c, spans }) => {
                if let Some(first) = owners.get(&c.name) {
                    inv.problems.push(Diagnostic::at(
                        &source,
                        spans.get("name"),
                        Some("name"),
                        format!(
                            "cluster name `{}` is already used by {}",
                            c.name,
                            first.display()
                        ),
                    ));
                    inv.entries.push(Entry::Broken { name: None, file });
                    continue;
                }
                owners.insert(c.name.clone(), file);
                inv.entries.push(Entry::Current(c, source.text));
            }
            Err(Broken { name, problems }) => {
                inv.problems.extend(problems);
                let name = name.filter(|n| !owners.contains_key(n));
                if let Some(n) = &name {
                    owners.insert(n.clone(), file.clone());
                }
                inv.entries.push(keep_or_broken(
                    last_good,
                    name,
                    &file,
                    prometheus_user,
                    &mut inv.problems,
                ));
            }
        }
    }
    Ok(inv)
}

fn keep_or_broken(
    last_good: &LastGood,
    name: Option<ClusterName>,
    file: &Path,
    prometheus_user: &Identity,
    problems: &mut Vec<Diagnostic>,
) -> Entry {
    let Some(kept) = name.as_ref().and_then(|n| last_good.load(n)) else {
        return Entry::Broken {
            name,
            file: file.to_path_buf(),
        };
    };
    // Keeping a definition whose CA is gone or refused would make
    // Prometheus drop the job on reload anyway, and promtool would reject a
    // missing token file.
    let files = kept.credential_files();
    let unreadable = files.iter().find_map(|(key, path)| {
        let why = prometheus_user.can_read(path).err()?;
        Some((*key, format!("{} {why}", path.display())))
    });
    let refused = || super::tls_files::refused(&files).into_iter().next();
    if let Some((key, why)) = unreadable.or_else(refused) {
        problems.push(Diagnostic::file(
            file,
            Some(key),
            format!("the last good configuration cannot be kept either: {why}"),
        ));
        return Entry::Broken {
            name,
            file: file.to_path_buf(),
        };
    }
    Entry::KeptLastGood(kept)
}

/// Where `labels.<key>` is written in a cluster file, inline or as a table.
fn label_key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let doc = toml_edit::Document::parse(text.to_string()).ok()?;
    let labels = doc.get("labels")?.as_table_like()?;
    let (k, _) = labels.get_key_value(key)?;
    k.span()
}

/// Each credential file must exist and be readable by promfed and by the
/// user Prometheus runs as. World-readable secrets are only warned about.
fn check_credentials(
    parsed: &Parsed,
    prometheus_user: &Identity,
    source: &SourceText,
    warnings: &mut Vec<String>,
) -> Result<(), Vec<Diagnostic>> {
    let Parsed { cluster: c, spans } = parsed;
    let mut problems = Vec::new();
    let files = c.credential_files();
    for &(key, path) in &files {
        let readable = crate::fsutil::open_regular(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                std::io::ErrorKind::InvalidInput => e.to_string(),
                _ => format!("cannot be read by promfed: {e}"),
            })
            .and_then(|_| prometheus_user.can_read(path));
        match readable {
            Err(why) => problems.push(Diagnostic::at(
                source,
                spans.get(key),
                Some(key),
                format!("{} {why}", path.display()),
            )),
            // Certificates are public; tokens and keys are not.
            Ok(()) if !key.ends_with("ca_file") && !key.ends_with("cert_file") && access::world_readable(path) => warnings.push(format!(
                "{}: {key} {} is readable by every user on this host; make it readable only by promfed and Prometheus (chmod o-r)",
                source.path.display(),
                path.display()
            )),
            Ok(()) => {}
        }
    }
    // TokenRequest's base: promfed alone reads it, Prometheus need not.
    for (key, path) in c.base_files() {
        if let Err(e) = crate::fsutil::open_regular(path) {
            problems.push(Diagnostic::at(
                source,
                spans.get(key),
                Some(key),
                format!("{} cannot be read by promfed: {e}", path.display()),
            ));
        }
    }
    for (key, why) in super::tls_files::refused(&files) {
        problems.push(Diagnostic::at(source, spans.get(key), Some(key), why));
    }
    if c.tls.insecure_skip_verify {
        warnings.push(format!(
            "{}: insecure_skip_verify = true: the API server's certificate is not checked, so anyone on the path can read the token",
            source.path.display()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Every cluster file in `dir`, including the ones that cannot be read (a
/// dangling symlink, a FIFO): those are reported, not silently dropped.
pub fn list_cluster_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // is_dir() follows symlinks: a linked folder is not a cluster file.
        if is_cluster_file(&path) && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One cluster file as `load` (and so `promfed check`) judges it: parsed,
/// and every credential file readable by promfed and by `prometheus_user`
/// and of a content Prometheus takes. The problems are one-line headlines;
/// warnings are left out (`add-cluster`, which stages a file, refuses only
/// what `check` would refuse).
pub fn read_checked(
    file: &Path,
    defaults: &Defaults,
    prometheus_user: &Identity,
) -> Result<Cluster, Vec<String>> {
    let headlines = |problems: Vec<Diagnostic>| -> Vec<String> {
        problems.iter().map(|p| p.headline()).collect()
    };
    let text = read_cluster_file(file).map_err(|e| vec![format!("{}: {e}", file.display())])?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let source = SourceText::new(file, text);
    let parsed = Cluster::parse_with(&source, stem, defaults)
        .map_err(|broken| headlines(broken.problems))?;
    check_credentials(&parsed, prometheus_user, &source, &mut Vec::new()).map_err(headlines)?;
    Ok(parsed.cluster)
}

/// One cluster file's definition, without the credential checks `load`
/// makes (for `doctor`, which checks them one by one, and `rbac`). The
/// problems are one-line headlines.
pub fn read_definition(file: &Path, defaults: &Defaults) -> Result<Cluster, Vec<String>> {
    let text = read_cluster_file(file).map_err(|e| vec![format!("{}: {e}", file.display())])?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    Cluster::parse_with(&SourceText::new(file, text), stem, defaults)
        .map(|p| p.cluster)
        .map_err(|broken| broken.problems.iter().map(|p| p.headline()).collect())
}

/// A cluster file's text; what is wrong with it, in words, when it cannot
/// be read. Only regular files are opened (a FIFO would block).
pub fn read_cluster_file(file: &Path) -> Result<String, String> {
    std::fs::metadata(file).map_err(|e| match std::fs::read_link(file) {
        Ok(target) => format!(
            "is a symlink to {}, which cannot be read: {e}",
            target.display()
        ),
        Err(_) => e.to_string(),
    })?;
    let bytes = crate::fsutil::read_regular(file, crate::fsutil::MAX_TOML_FILE)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_found_inline_and_in_a_table() {
        let inline = "api_server = \"https://h\"\nlabels = { team = \"a\", replica = \"x\" }\n";
        let span = label_key_span(inline, "replica").unwrap();
        assert_eq!(&inline[span], "replica");
        let table = "api_server = \"https://h\"\n[labels]\n\"replica\" = \"x\"\n";
        let span = label_key_span(table, "replica").unwrap();
        assert_eq!(&table[span], "\"replica\"");
        assert_eq!(label_key_span(table, "team"), None);
    }

    #[test]
    fn ignores_package_manager_and_editor_leftovers() {
        for name in [
            "a.toml.dpkg-old",
            ".a.toml",
            "a.toml~",
            "a.toml.example",
            "b.toml.disabled",
            "README",
            "a.toml.rpmnew",
        ] {
            assert!(!is_cluster_file(Path::new(name)), "{name}");
        }
        assert!(is_cluster_file(Path::new("/etc/promfed.d/prod.toml")));
    }
}
