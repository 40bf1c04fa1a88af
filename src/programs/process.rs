//! Finding a managed program's process and asking it, by SIGHUP, to re-read
//! its configuration. Only a process that is the program is signalled: a
//! pid file holding -1 or 0 would otherwise reach every process promfed may
//! signal (with CAP_KILL, the whole host) or its own group.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::settings::ProcessRef;

/// Linux truncates `/proc/PID/comm` to this many bytes.
const COMM_LEN: usize = 15;

pub fn send_sighup(process: &ProcessRef) -> Result<(), String> {
    let pid = find_process(process)?;
    kill(Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|e| format!("cannot send SIGHUP to process {pid}: {e}"))
}

pub fn find_process(process: &ProcessRef) -> Result<i32, String> {
    match process {
        ProcessRef::PidFile(path, names) => {
            let text = crate::fsutil::read_regular(path, 64)
                .map_err(|e| format!("cannot read pid_file {}: {e}", path.display()))?;
            let text = String::from_utf8_lossy(&text);
            let pid: i32 = text
                .trim()
                .parse()
                .ok()
                .filter(|pid| *pid > 1)
                .ok_or_else(|| {
                    format!(
                        "pid_file {} holds `{}`, not the process id of a program (a number above 1)",
                        path.display(),
                        text.trim()
                    )
                })?;
            if !is_program(pid, names) {
                return Err(format!(
                    "pid_file {} names process {pid}, which is not {} (stale pid file?); nothing was signalled",
                    path.display(),
                    names.join(" or ")
                ));
            }
            Ok(pid)
        }
        ProcessRef::Name(name) => {
            let found = processes_named(name);
            match found.as_slice() {
                [pid] => Ok(*pid),
                [] => Err(format!(
                    "no running process named `{name}` (is Prometheus running?)"
                )),
                many => Err(format!(
                    "{} processes are named `{name}` ({}); set pid_file or reload = \"http\" to say which one",
                    many.len(),
                    many.iter()
                        .map(i32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// Whether process `pid` runs one of `names`: by the file name of its
/// argv[0] or of its executable, or by `comm`, which Linux cuts at 15 bytes
/// (Debian's Alertmanager shows as `prometheus-aler` there).
fn is_program(pid: i32, names: &[&str]) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let base = |path: &str| {
        Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(" (deleted)").to_string())
    };
    let argv0 = std::fs::read(proc.join("cmdline")).ok().and_then(|c| {
        let first = c.split(|b| *b == 0).next()?;
        base(std::str::from_utf8(first).ok()?)
    });
    let exe = std::fs::read_link(proc.join("exe"))
        .ok()
        .and_then(|p| base(p.to_str()?));
    let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
    let comm = comm.trim_end();
    names.iter().any(|name| {
        argv0.as_deref() == Some(name)
            || exe.as_deref() == Some(name)
            || (!comm.is_empty() && comm == &name[..name.len().min(COMM_LEN)])
    })
}

/// Processes that run `name`, from /proc.
fn processes_named(name: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| *pid > 1 && is_program(*pid, &[name]))
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};

    use super::*;

    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Debian's real Alertmanager, on loopback ports of its own choosing.
    fn alertmanager(dir: &Path) -> Killed {
        let binary = "/usr/bin/prometheus-alertmanager";
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: run scripts/test"
        );
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: default\nreceivers:\n  - name: default\n",
        )
        .unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .args([
                "--web.listen-address=127.0.0.1:0",
                "--cluster.listen-address=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        Killed(child)
    }

    #[test]
    fn debians_alertmanager_is_found_by_its_full_name() {
        let dir = tempfile::tempdir().unwrap();
        let am = alertmanager(dir.path());
        let pid = am.0.id() as i32;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(
            comm.trim_end(),
            "prometheus-aler",
            "Linux cuts comm at 15 bytes"
        );
        assert!(is_program(pid, &["prometheus-alertmanager"]));
        assert!(processes_named("prometheus-alertmanager").contains(&pid));
        assert!(!is_program(pid, &["prometheus"]));
    }

    #[test]
    fn a_pid_file_must_name_the_program_itself() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("am.pid");
        let names: &'static [&'static str] = &["prometheus-alertmanager", "alertmanager"];
        let find = |text: &str| {
            std::fs::write(&pid_file, text).unwrap();
            find_process(&ProcessRef::PidFile(pid_file.clone(), names))
        };
        for bad in ["-1", "0", "1", "", "12ab", "99999999999"] {
            let why = find(bad).unwrap_err();
            assert!(
                why.contains("not the process id of a program"),
                "{bad}: {why}"
            );
        }
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let why = find(&sleeper.id().to_string()).unwrap_err();
        assert!(
            why.contains("which is not prometheus-alertmanager or alertmanager"),
            "{why}"
        );
        let _ = sleeper.kill();
        let _ = sleeper.wait();

        let am = alertmanager(dir.path());
        assert_eq!(find(&format!("{}\n", am.0.id())), Ok(am.0.id() as i32));
    }
}
