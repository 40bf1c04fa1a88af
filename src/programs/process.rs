//! Finding a managed program's process and asking it, by SIGHUP, to re-read
//! its configuration.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::settings::ProcessRef;

pub fn send_sighup(process: &ProcessRef) -> Result<(), String> {
    let pid = find_process(process)?;
    kill(Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|e| format!("cannot send SIGHUP to process {pid}: {e}"))
}

fn find_process(process: &ProcessRef) -> Result<i32, String> {
    match process {
        ProcessRef::PidFile(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read pid_file {}: {e}", path.display()))?;
            text.trim()
                .parse()
                .map_err(|_| format!("pid_file {} does not hold a process id", path.display()))
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

/// Processes whose command name is `name`, from /proc.
fn processes_named(name: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect();
    pids.sort_unstable();
    pids
}
