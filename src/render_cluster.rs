//! `promfed render CLUSTER…`: each cluster's definition as promfed reads it,
//! promfed.toml's `[defaults]` merged in, every value with the file and
//! line it comes from. Read-only; credentials are `check`'s to judge.

use std::path::{Path, PathBuf};

use crate::config::cluster::Cluster;
use crate::config::diagnostic::SourceText;
use crate::config::settings::Settings;
use crate::config::{inventory, origins};

const EX_USAGE: u8 = 2;
const EX_CONFIG: u8 = 78;

/// Prints the definitions of the clusters `wanted` names (by name, file
/// stem or path). 0 when all are valid, 78 when one is not, 2 when a name
/// matches no cluster file, 1 when the folder cannot be listed.
pub fn print(settings: &Settings, wanted: &[String]) -> u8 {
    let files = match inventory::list_cluster_files(&settings.clusters_dir) {
        Ok(files) => files,
        Err(e) => {
            tell!(
                "error: cannot list the clusters folder {}: {e}",
                settings.clusters_dir.display()
            );
            return 1;
        }
    };
    let mut code = 0;
    for name in wanted {
        let found = files
            .iter()
            .find_map(|f| read(f, settings).filter(|r| r.matches(name, f)));
        code = code.max(match found {
            Some(read) => show(&read, settings),
            None => {
                tell!(
                    "error: no cluster file in {} is named `{name}`",
                    settings.clusters_dir.display()
                );
                EX_USAGE
            }
        });
    }
    code
}

/// One cluster file, read with the defaults under it.
struct Read {
    file: PathBuf,
    source: SourceText,
    parsed: Result<Cluster, Vec<String>>,
}

impl Read {
    fn matches(&self, wanted: &str, file: &Path) -> bool {
        let stem = file.file_stem().and_then(|s| s.to_str());
        let name = self.parsed.as_ref().ok().map(|c| c.name.as_str());
        stem == Some(wanted) || name == Some(wanted) || Path::new(wanted) == file
    }
}

fn read(file: &Path, settings: &Settings) -> Option<Read> {
    let text = inventory::read_cluster_file(file).ok()?;
    let stem = file.file_stem()?.to_str()?.to_string();
    let source = SourceText::new(file, text);
    let parsed = Cluster::parse_with(&source, &stem, &settings.defaults)
        .map(|p| p.cluster)
        .map_err(|b| b.problems.iter().map(ToString::to_string).collect());
    Some(Read {
        file: file.to_path_buf(),
        source,
        parsed,
    })
}

/// Only a valid definition is printed: its values passed every check (no
/// URL with a password, for one), so none is a secret.
fn show(read: &Read, settings: &Settings) -> u8 {
    let cluster = match &read.parsed {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                tell!("error: {p}");
            }
            tell!(
                "promfed: {} is not valid; nothing to show",
                read.file.display()
            );
            return EX_CONFIG;
        }
    };
    match origins::of(&read.source, &settings.defaults) {
        Ok(o) => {
            say_raw!("{}", o.to_toml(cluster.name.as_str()));
            0
        }
        Err(d) => {
            tell!("error: {d}");
            EX_CONFIG
        }
    }
}
