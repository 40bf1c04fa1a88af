//! Runs a cluster's exec credential plugin as client-go does, as promfed's
//! own user: no terminal (stdin is /dev/null, `interactive` is false), a
//! clean environment, a time limit, and bounded output. stderr is never
//! shown as written: a plugin may print its token there.

use std::collections::BTreeMap;
use std::process::Stdio;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::exec_credential::{self, MAX_OUTPUT};
use super::{CredentialError, Issued};
use crate::config::cluster::Cluster;
use crate::config::credential_source::Exec;
use crate::fsutil;

/// stderr kept to summarise (the rest is read and dropped, so that the
/// plugin never blocks on a full pipe).
const MAX_STDERR: usize = 64 << 10;
/// The variables of promfed's own environment a plugin gets; everything
/// else comes from `[exec] env`.
pub const PASSED_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];
/// PATH when promfed has none (systemd gives one).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Characters of a run that may be a secret (base64, URL-safe base64, JWTs).
const SECRET_RUN: usize = 16;

/// Runs the plugin once and decodes what it printed.
pub async fn run(cluster: &Cluster, exec: &Exec) -> Result<Issued, CredentialError> {
    let command = exec.command.display().to_string();
    let mut cmd = Command::new(&exec.command);
    cmd.args(&exec.args)
        .env_clear()
        .envs(environment(exec, &exec_info(cluster, exec)))
        .current_dir(&exec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group: a timeout kills what it started too.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| CredentialError::Spawn {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    let group = child.id();
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let work = async {
        tokio::try_join!(
            read_bounded(stdout.as_mut(), MAX_OUTPUT, true),
            read_bounded(stderr.as_mut(), MAX_STDERR, false),
            async { child.wait().await.map_err(|e| Overflow::Io(e.to_string())) },
        )
    };
    let outcome = tokio::time::timeout(exec.timeout, work).await;
    let finished = matches!(outcome, Ok(Ok(_)));
    if !finished {
        kill_group(group);
    }
    let (out, err, status) = match outcome {
        Err(_) => {
            return Err(CredentialError::Timeout {
                command,
                limit: exec.timeout,
            });
        }
        Ok(Err(Overflow::Limit)) => {
            return Err(CredentialError::TooMuch {
                command,
                stream: "stdout",
                limit: format!("{} KiB", MAX_OUTPUT >> 10),
            });
        }
        Ok(Err(Overflow::Io(detail))) => return Err(CredentialError::Spawn { command, detail }),
        Ok(Ok(done)) => done,
    };
    let decoded = exec_credential::decode(&out, exec.api_version, jiff::Timestamp::now());
    let token = decoded.as_ref().ok().and_then(|i| i.secret.token());
    let stderr = stderr_summary(&err, token);
    if !status.success() {
        return Err(CredentialError::Exited {
            command,
            status: status.to_string(),
            stderr,
        });
    }
    decoded.map_err(|detail| CredentialError::Garbage {
        command,
        detail,
        stderr,
    })
}

enum Overflow {
    Limit,
    Io(String),
}

/// Reads a pipe to its end; more than `cap` is an error when `strict`,
/// else dropped.
async fn read_bounded<R: AsyncRead + Unpin>(
    pipe: Option<&mut R>,
    cap: usize,
    strict: bool,
) -> Result<Vec<u8>, Overflow> {
    let mut kept = Vec::new();
    let Some(pipe) = pipe else { return Ok(kept) };
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let n = pipe
            .read(&mut chunk)
            .await
            .map_err(|e| Overflow::Io(e.to_string()))?;
        if n == 0 {
            return Ok(kept);
        }
        if kept.len() + n > cap {
            if strict {
                return Err(Overflow::Limit);
            }
            let room = cap.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..room]);
        } else {
            kept.extend_from_slice(&chunk[..n]);
        }
    }
}

fn kill_group(group: Option<u32>) {
    let Some(pid) = group.and_then(|g| i32::try_from(g).ok()).filter(|p| *p > 1) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The plugin's environment: `PASSED_ENV` from promfed's own, then the
/// stanza's `env`, then `KUBERNETES_EXEC_INFO`.
fn environment(exec: &Exec, info: &str) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = PASSED_ENV
        .iter()
        .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
        .collect();
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    env.extend(exec.env.clone());
    env.insert("KUBERNETES_EXEC_INFO".into(), info.into());
    env
}

/// `KUBERNETES_EXEC_INFO`, as client-go sets it: not interactive, and the
/// cluster's server and CA when `provide_cluster_info` asks.
fn exec_info(cluster: &Cluster, exec: &Exec) -> String {
    let mut spec = serde_json::json!({ "interactive": false });
    if exec.provide_cluster_info {
        let mut info = serde_json::json!({
            "server": cluster.api_server.url.as_str().trim_end_matches('/'),
            "insecure-skip-tls-verify": cluster.tls.insecure_skip_verify,
        });
        if let Some(ca) = cluster
            .tls
            .ca_file
            .as_deref()
            .and_then(|f| fsutil::read_regular(f, 1 << 20).ok())
        {
            info["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        if let Some(name) = &cluster.tls.server_name {
            info["tls-server-name"] = name.clone().into();
        }
        spec["cluster"] = info;
    }
    serde_json::json!({
        "apiVersion": exec.api_version.as_str(),
        "kind": "ExecCredential",
        "spec": spec,
    })
    .to_string()
}

/// What stderr said, safe to show: its size, and its first line with the
/// token and every run that may be a secret (16 or more characters of
/// base64 or a JWT) replaced.
pub fn stderr_summary(stderr: &[u8], token: Option<&str>) -> String {
    if stderr.is_empty() {
        return "nothing on stderr".into();
    }
    let text = String::from_utf8_lossy(stderr);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut line = crate::discovery::redact(first, token);
    line = redact_runs(&line);
    let shown: String = line.chars().take(200).collect();
    format!(
        "{} bytes on stderr, the first line: {shown:?}",
        stderr.len()
    )
}

fn redact_runs(text: &str) -> String {
    let secretish = |c: char| c.is_ascii_alphanumeric() || "+/=._-~".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= SECRET_RUN {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if secretish(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_shown_by_size_and_a_first_line_without_secrets() {
        let token = "k8s-aws-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8";
        let stderr = format!("got token {token}\nmore\n");
        let s = stderr_summary(stderr.as_bytes(), Some(token));
        assert!(!s.contains("aHR0cHM6"), "{s}");
        assert!(
            s.starts_with(&format!("{} bytes on stderr", stderr.len())),
            "{s}"
        );
        // A token it did not print on stdout is caught by its shape.
        let s = stderr_summary(
            b"oops: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln leaked",
            None,
        );
        assert!(!s.contains("eyJ"), "{s}");
        let s = stderr_summary(b"Unable to locate credentials. You can configure credentials by running \"aws configure\".", None);
        assert!(s.contains("Unable to locate credentials"), "{s}");
        assert_eq!(stderr_summary(b"", None), "nothing on stderr");
        let s = stderr_summary(&[0xff, b'\n', b'x'], None);
        assert!(s.starts_with("3 bytes"), "{s}");
    }

    #[test]
    fn the_environment_is_clean_and_the_stanza_s_own() {
        let exec = Exec {
            api_version: crate::config::credential_source::ExecApiVersion::V1,
            command: "aws".into(),
            args: vec![],
            env: [("AWS_PROFILE".to_string(), "monitoring".to_string())].into(),
            provide_cluster_info: false,
            timeout: std::time::Duration::from_secs(1),
            dir: "/".into(),
        };
        let env = environment(&exec, "{}");
        assert!(env.contains_key("PATH"));
        assert_eq!(env["AWS_PROFILE"], "monitoring");
        assert_eq!(env["KUBERNETES_EXEC_INFO"], "{}");
        assert!(env.keys().all(|k| PASSED_ENV.contains(&k.as_str())
            || k == "AWS_PROFILE"
            || k == "KUBERNETES_EXEC_INFO"));
    }
}
