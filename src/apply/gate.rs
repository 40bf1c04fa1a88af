//! Stage 2, the gate: `Candidate → Checked`. The file checks promtool and
//! amtool do not make, then the tool itself, run on the candidate written
//! beside the target so relative paths resolve as they will for the program
//! that reads it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::staged::StagedFile;
use crate::access::Identity;
use crate::render::Candidate;
use crate::render::files::NamedFile;

/// A candidate that passed the gate, staged beside its target. Only `gate`
/// makes one, so nothing unchecked can be installed.
#[derive(Debug)]
pub struct Checked {
    staged: StagedFile,
    text: String,
}

impl Checked {
    /// The staged file and the text it holds, for the install stage.
    pub(super) fn into_parts(self) -> (StagedFile, String) {
        (self.staged, self.text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("the configuration names files Prometheus cannot read:\n  {}", .0.join("\n  "))]
    Files(Vec<String>),
    #[error("{tool} rejected the candidate configuration:\n{output}")]
    Rejected { tool: &'static str, output: String },
    #[error("{0} did not finish within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("cannot run {}: {}", .0.display(), .1)]
    Tool(PathBuf, std::io::Error),
    #[error("cannot write the candidate beside {}: {}{}", .0.display(), .1, crate::fsutil::denied_hint(.0, .1))]
    Stage(PathBuf, std::io::Error),
}

/// The checking program and how it is called: `promtool check config FILE`
/// or `amtool check-config FILE`.
#[derive(Debug, Clone, Copy)]
pub struct CheckTool<'a> {
    name: &'static str,
    path: &'a Path,
    args: &'static [&'static str],
}

impl<'a> CheckTool<'a> {
    pub fn promtool(path: &'a Path) -> Self {
        CheckTool {
            name: "promtool",
            path,
            args: &["check", "config"],
        }
    }

    pub fn amtool(path: &'a Path) -> Self {
        CheckTool {
            name: "amtool",
            path,
            args: &["check-config"],
        }
    }
}

impl GateError {
    /// The configuration itself is at fault (78); otherwise the machine is
    /// (a missing tool, a folder promfed may not write), and trying again
    /// after it is fixed may succeed.
    pub fn is_config_error(&self) -> bool {
        matches!(self, GateError::Files(_) | GateError::Rejected { .. })
    }
}

pub async fn gate(
    candidate: Candidate,
    target: &Path,
    tool: CheckTool<'_>,
    timeout: Duration,
    reader: &Identity,
) -> Result<Checked, GateError> {
    let config_dir = target.parent().unwrap_or(Path::new("/"));
    let unreadable = unreadable_files(candidate.files(), config_dir, reader);
    let text = candidate.into_text();
    if !unreadable.is_empty() {
        return Err(GateError::Files(unreadable));
    }
    let staged = StagedFile::write(target, text.as_bytes(), 0o644)
        .map_err(|e| GateError::Stage(target.to_path_buf(), e))?;
    run_check(tool, staged.path(), timeout).await?;
    Ok(Checked { staged, text })
}

async fn run_check(tool: CheckTool<'_>, file: &Path, timeout: Duration) -> Result<(), GateError> {
    let run = Command::new(tool.path)
        .args(tool.args)
        .arg(file)
        .kill_on_drop(true)
        .output();
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| GateError::Timeout(tool.name, timeout))?
        .map_err(|e| GateError::Tool(tool.path.to_path_buf(), e))?;
    tracing::debug!(stage = "check_tool", tool = tool.name, took = ?started.elapsed());
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    // The tool names the hidden candidate; say what the operator knows.
    let output = text
        .trim()
        .replace(&file.display().to_string(), "the candidate");
    Err(GateError::Rejected {
        tool: tool.name,
        output,
    })
}

/// Every file the configuration names that `reader` cannot read, with where
/// it is named. promtool skips `ca_file`, and a missing CA makes Prometheus
/// half-apply a reload.
fn unreadable_files(files: &[NamedFile], config_dir: &Path, reader: &Identity) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let path = config_dir.join(&f.path);
        if let Err(why) = reader.can_read(&path) {
            found.push(format!("{}{}: {} {why}", f.place, f.key, path.display()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_files_promtool_does_not_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        let yaml = "scrape_configs:\n- job_name: a\n  authorization: {credentials_file: token}\n  tls_config: {ca_file: /nonexistent/ca.crt}\n";
        let root = Identity::lookup("root").unwrap();
        let candidate = crate::render::candidate_for_tests(yaml);
        assert_eq!(
            unreadable_files(candidate.files(), dir.path(), &root),
            ["job `a`: ca_file: /nonexistent/ca.crt does not exist"]
        );
    }
}
