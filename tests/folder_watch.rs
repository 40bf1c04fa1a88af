//! The clusters folder replaced under a running daemon, as rsync, Ansible's
//! `copy` and Kubernetes' `..data` symlink swaps do: whatever the order of
//! the moves, an edit made a second after the folder is back is applied.
//!
//! Each variant replaces the folder `ROUNDS` times and edits a cluster file
//! a second later each time; every lost edit is counted, so that a failure
//! says how many were lost, not only the first.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);
const ROUNDS: usize = 20;
/// How long an edit may take to be in force once written.
const LIVE_WITHIN: Duration = Duration::from_secs(4);

fn cp_a(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// `rm -rf` the clusters folder, then `cp -a` a copy back: the new folder
/// (and its subfolders) are likely to get the inode numbers just freed.
fn replace(setup: &Setup) {
    let folder = setup.path("etc/promfed.d");
    // Outside every watched folder: the copy itself is no news.
    let copy = setup.path("copy");
    cp_a(&folder, &copy);
    std::fs::remove_dir_all(&folder).unwrap();
    cp_a(&copy, &folder);
    std::fs::remove_dir_all(&copy).unwrap();
}

/// A daemon running with one cluster, `stage`, in force.
/// Fields drop in order: the daemon first, the tree last.
struct Running {
    daemon: Daemon,
    _prometheus: Prometheus,
    _stage: FakeCluster,
    _exporter: NodeExporter,
    setup: Setup,
}

/// Starts the daemon; `prepare` may rearrange the tree before it starts.
fn running(prepare: impl FnOnce(&Setup)) -> Running {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    prepare(&setup);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    wait_for("stage in force", LONG, || {
        setup
            .read("prometheus/prometheus.yml")
            .contains("promfed/stage/")
            .then_some(())
    });
    Running {
        daemon,
        _prometheus: prometheus,
        _stage: stage,
        _exporter: exporter,
        setup,
    }
}

/// Whether the installed Prometheus file holds `label` within `limit`;
/// systemd's messages are read meanwhile, so that the daemon never blocks.
fn live_within(run: &mut Running, label: &str, limit: Duration) -> bool {
    let wanted = format!("replacement: {label}");
    let start = Instant::now();
    loop {
        run.daemon.drain();
        let installed = std::fs::read_to_string(run.setup.path("prometheus/prometheus.yml"))
            .unwrap_or_default();
        if installed.contains(&wanted) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ROUNDS` times: `disturb` the folder, wait a second, edit stage's
/// labels, and give the edit `LIVE_WITHIN` to be in force. Fails listing
/// the rounds whose edit was lost.
fn every_edit_applies(run: &mut Running, mut disturb: impl FnMut(&mut Running)) {
    let template = run.setup.read("etc/promfed.d/stage.toml");
    assert!(template.contains("env = \"test\""), "{template}");
    let mut lost = Vec::new();
    for round in 1..=ROUNDS {
        disturb(run);
        std::thread::sleep(Duration::from_secs(1));
        let label = format!("edit{round:02}");
        run.setup.write(
            "etc/promfed.d/stage.toml",
            &template.replace("env = \"test\"", &format!("env = \"{label}\"")),
        );
        if !live_within(run, &label, LIVE_WITHIN) {
            lost.push(round);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {ROUNDS} edits lost (rounds {lost:?})\n--- log\n{}",
        lost.len(),
        run.daemon.log()
    );
}

#[test]
fn an_edit_after_the_folder_is_replaced_by_a_copy_is_applied_every_time() {
    let mut run = running(|_| {});
    every_edit_applies(&mut run, |run| replace(&run.setup));
}

#[test]
fn an_edit_after_the_folder_is_moved_away_brought_back_and_replaced_is_applied_every_time() {
    let mut run = running(|_| {});
    every_edit_applies(&mut run, |run| {
        let folder = run.setup.path("etc/promfed.d");
        let away = run.setup.path("away");
        std::fs::rename(&folder, &away).unwrap();
        std::fs::rename(&away, &folder).unwrap();
        run.daemon.signal("HUP");
        replace(&run.setup);
    });
}

/// The clusters folder as Kubernetes mounts a ConfigMap: `promfed.d` links
/// to `..data`, which links to a timestamped folder; an update writes a new
/// folder, renames a new `..data` link over the old one, and removes the
/// old folder.
#[test]
fn an_edit_after_a_kubernetes_style_data_swap_of_the_folder_is_applied_every_time() {
    let mut run = running(|setup| {
        std::fs::rename(setup.path("etc/promfed.d"), setup.path("etc/..r00")).unwrap();
        std::os::unix::fs::symlink("..r00", setup.path("etc/..data")).unwrap();
        std::os::unix::fs::symlink("..data", setup.path("etc/promfed.d")).unwrap();
    });
    let mut current = 0;
    every_edit_applies(&mut run, |run| {
        let old = run.setup.path(&format!("etc/..r{current:02}"));
        current += 1;
        let name = format!("..r{current:02}");
        cp_a(&old, &run.setup.path(&format!("etc/{name}")));
        let link = run.setup.path("etc/..data_tmp");
        std::os::unix::fs::symlink(&name, &link).unwrap();
        std::fs::rename(&link, run.setup.path("etc/..data")).unwrap();
        std::fs::remove_dir_all(&old).unwrap();
    });
    assert!(
        std::fs::symlink_metadata(run.setup.path("etc/promfed.d"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the folder was a link throughout"
    );
}
