//! One managed program, Prometheus or Alertmanager, and the stages its
//! configuration goes through in a transaction:
//! render → gate → install → verify (→ roll back).

use std::path::{Path, PathBuf};

use super::Mode;
use super::gate::{self, CheckTool, Checked};
use super::install::install;
use super::outcome::ConfigOutcome;
use super::ownership::{BaseChoice, choose_base};
use super::rollback::roll_back;
use super::verify::{in_force, runs, verify};
use crate::config::cluster::Cluster;
use crate::config::diagnostic::Diagnostic;
use crate::config::settings::{ServiceSettings, Settings};
use crate::programs::alertmanager::Alertmanager;
use crate::programs::prometheus::Prometheus;
use crate::programs::{LastLoad, Program, ProgramKind, Reloaded, VerifyError};
use crate::render::{self, Base, Candidate};

/// The API of either program, behind one type so that both can sit in one
/// list.
enum Api {
    Prometheus(Prometheus),
    Alertmanager(Alertmanager),
}

impl Program for Api {
    fn name(&self) -> &'static str {
        match self {
            Api::Prometheus(p) => p.name(),
            Api::Alertmanager(a) => a.name(),
        }
    }

    async fn last_load(&self) -> Result<LastLoad, String> {
        match self {
            Api::Prometheus(p) => p.last_load().await,
            Api::Alertmanager(a) => a.last_load().await,
        }
    }

    async fn reload(&self) -> Result<Reloaded, VerifyError> {
        match self {
            Api::Prometheus(p) => p.reload().await,
            Api::Alertmanager(a) => a.reload().await,
        }
    }

    async fn in_force(&self) -> Result<Vec<String>, String> {
        match self {
            Api::Prometheus(p) => p.in_force().await,
            Api::Alertmanager(a) => a.in_force().await,
        }
    }

    fn expected(&self, config: &str) -> Vec<String> {
        match self {
            Api::Prometheus(p) => p.expected(config),
            Api::Alertmanager(a) => a.expected(config),
        }
    }
}

/// A program whose configuration promfed writes: its settings, how to check
/// and reach it, and where its previous file is kept. Whether it runs the
/// installed file is asked of the program itself in every transaction.
pub struct Managed {
    kind: ProgramKind,
    settings: ServiceSettings,
    api: Api,
    previous_copy: PathBuf,
    /// What promfed saw when it last verified this program's file.
    proof: PathBuf,
}

impl Managed {
    /// The programs `settings` manage, Prometheus first.
    pub fn all(settings: &Settings) -> Vec<Managed> {
        let prometheus = (ProgramKind::Prometheus, &settings.prometheus);
        let alertmanager = settings
            .alertmanager
            .as_ref()
            .map(|am| (ProgramKind::Alertmanager, am));
        std::iter::once(prometheus)
            .chain(alertmanager)
            .map(|(kind, s)| Managed {
                kind,
                api: match kind {
                    ProgramKind::Prometheus => Api::Prometheus(Prometheus::new(s)),
                    ProgramKind::Alertmanager => Api::Alertmanager(Alertmanager::new(s)),
                },
                previous_copy: settings
                    .last_good_dir()
                    .join(format!("{}.yml", kind.name())),
                proof: settings
                    .last_good_dir()
                    .join(format!("{}.verified", kind.name())),
                settings: s.clone(),
            })
            .collect()
    }

    pub fn kind(&self) -> ProgramKind {
        self.kind
    }

    pub fn config_file(&self) -> &Path {
        &self.settings.config_file
    }

    fn check_tool(&self) -> CheckTool<'_> {
        match self.kind {
            ProgramKind::Prometheus => CheckTool::promtool(&self.settings.check_tool),
            ProgramKind::Alertmanager => CheckTool::amtool(&self.settings.check_tool),
        }
    }

    fn render(
        &self,
        base: &Path,
        clusters: &[&Cluster],
        settings: &Settings,
    ) -> Result<Candidate, Vec<Diagnostic>> {
        let base = Base::load(base).map_err(|d| vec![d])?;
        match self.kind {
            ProgramKind::Prometheus => render::prometheus_config(&base, clusters, settings),
            ProgramKind::Alertmanager => {
                render::alertmanager_config(&base, clusters, &settings.clusters_dir)
            }
        }
    }

    /// Chooses the base (adopting the operator's file when it may), renders
    /// and gates this program's configuration; in apply mode also installs,
    /// reloads and verifies it. Returns the base used, when it got that far.
    pub async fn run(
        &self,
        clusters: &[&Cluster],
        settings: &Settings,
        mode: Mode,
        problems: &mut Vec<Diagnostic>,
    ) -> (ConfigOutcome, Option<BaseChoice>) {
        let s = &self.settings;
        let base = match choose_base(
            self.kind,
            &s.config_file,
            &s.base_file,
            &settings.state_dir,
            mode,
        ) {
            Ok(base) => base,
            Err(why) => return (ConfigOutcome::NotOurs(why), None),
        };
        let outcome = self
            .render_and_deliver(&base.path, clusters, settings, mode, problems)
            .await;
        (outcome, Some(base))
    }

    /// What the checking tool says against the configuration for
    /// `clusters` rendered on `base` (render and gate only); `None` when it
    /// accepts it, or refuses for a reason that is not the configuration's.
    pub async fn refusal(
        &self,
        base: &Path,
        clusters: &[&Cluster],
        settings: &Settings,
    ) -> Option<String> {
        let candidate = self.render(base, clusters, settings).ok()?;
        let s = &self.settings;
        match gate::gate(
            candidate,
            &s.config_file,
            self.check_tool(),
            s.check_timeout,
            &s.user,
        )
        .await
        {
            Err(e) if e.is_config_error() => Some(e.to_string()),
            _ => None,
        }
    }

    async fn render_and_deliver(
        &self,
        base: &Path,
        clusters: &[&Cluster],
        settings: &Settings,
        mode: Mode,
        problems: &mut Vec<Diagnostic>,
    ) -> ConfigOutcome {
        let started = std::time::Instant::now();
        let candidate = match self.render(base, clusters, settings) {
            Ok(c) => c,
            Err(ds) => {
                problems.extend(ds);
                return ConfigOutcome::NotRendered;
            }
        };
        tracing::debug!(stage = "render", program = self.kind.name(), took = ?started.elapsed(), bytes = candidate.text().len());
        let s = &self.settings;
        // Nothing changed and the program runs it: a gate would only repeat
        // what it said when these bytes were installed.
        let started = std::time::Instant::now();
        if mode == Mode::Apply && self.runs(&candidate).await {
            tracing::debug!(stage = "unchanged", took = ?started.elapsed());
            return ConfigOutcome::Unchanged;
        }
        // Candidates of killed runs would pile up beside the target.
        crate::fsutil::remove_stale_beside(&s.config_file);
        let gated = gate::gate(
            candidate,
            &s.config_file,
            self.check_tool(),
            s.check_timeout,
            &s.user,
        )
        .await;
        tracing::debug!(stage = "gate", took = ?started.elapsed());
        let checked = match gated {
            Ok(c) => c,
            Err(e) => return ConfigOutcome::Rejected(e),
        };
        if mode == Mode::Check {
            return ConfigOutcome::Passed;
        }
        let files = Files {
            target: s.config_file.clone(),
            previous_copy: self.previous_copy.clone(),
            proof: self.proof.clone(),
        };
        deliver(&self.api, checked, &files).await
    }
}

impl Managed {
    /// Whether the installed file is `candidate`, byte for byte, and the
    /// program verifiably runs it.
    async fn runs(&self, candidate: &Candidate) -> bool {
        let target = &self.settings.config_file;
        // A change of size needs no reading (7.5 MB at 1000 clusters).
        let same_size =
            std::fs::metadata(target).is_ok_and(|m| m.len() == candidate.text().len() as u64);
        if !same_size {
            return false;
        }
        let installed = crate::fsutil::read_regular(target, crate::fsutil::MAX_CONFIG_FILE);
        if installed.ok().as_deref() != Some(candidate.text().as_bytes()) {
            return false;
        }
        // Prometheus answers from all its own metrics (runtimeinfo gathers
        // them): at 1000 clusters this is most of a no-op's time.
        let asked = std::time::Instant::now();
        let runs = runs(&self.api, target, candidate.text(), &self.proof)
            .await
            .unwrap_or(false);
        tracing::debug!(stage = "ask_program", took = ?asked.elapsed());
        runs
    }
}

/// Where one program's file goes, and what is kept beside it.
struct Files {
    target: PathBuf,
    previous_copy: PathBuf,
    proof: PathBuf,
}

/// Install → verify (→ roll back) for one checked file. With the same bytes
/// already installed it reloads only when the program does not run them: a
/// reload lost to a stopped or killed program, or a file reverted by hand.
async fn deliver(program: &impl Program, checked: Checked, files: &Files) -> ConfigOutcome {
    let started = std::time::Instant::now();
    let installed = match install(checked, &files.target, &files.previous_copy) {
        Ok(i) => i,
        Err(e) => return ConfigOutcome::Failed(e),
    };
    tracing::debug!(stage = "install", took = ?started.elapsed());
    if !installed.changed() {
        match in_force(program, &installed, &files.proof).await {
            Ok(true) => return ConfigOutcome::Unchanged,
            Ok(false) => {}
            Err(e) => {
                return ConfigOutcome::InstalledUnverified(VerifyError::Unreachable(
                    program.name(),
                    e,
                ));
            }
        }
        return match verify(program, &installed, &files.proof).await {
            Ok(v) => ConfigOutcome::Applied(v),
            Err(e) => ConfigOutcome::InstalledUnverified(e),
        };
    }
    match verify(program, &installed, &files.proof).await {
        Ok(v) => ConfigOutcome::Applied(v),
        Err(error @ VerifyError::Unreachable(..)) => ConfigOutcome::InstalledUnverified(error),
        Err(error) => {
            ConfigOutcome::RolledBack(roll_back(program, installed, error, &files.proof).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use super::*;
    use crate::access::Identity;
    use crate::apply::rollback::RolledBack;

    /// A program that loads whatever file it is told to, unless that file
    /// contains a line in `refuse`; records every reload.
    struct FakeProgram {
        file: PathBuf,
        refuse: &'static str,
        reachable: bool,
        loaded: RefCell<Option<String>>,
        loaded_at: RefCell<i64>,
        reloads: RefCell<u32>,
    }

    impl FakeProgram {
        fn new(file: &Path) -> FakeProgram {
            FakeProgram {
                file: file.to_path_buf(),
                refuse: "refused",
                reachable: true,
                loaded: RefCell::new(None),
                loaded_at: RefCell::new(0),
                reloads: RefCell::new(0),
            }
        }
    }

    impl Program for FakeProgram {
        fn name(&self) -> &'static str {
            "Fake"
        }

        async fn last_load(&self) -> Result<LastLoad, String> {
            if !self.reachable {
                return Err("connection refused".into());
            }
            Ok(LastLoad {
                successful: true,
                success_second: *self.loaded_at.borrow(),
                instance: None,
            })
        }

        async fn reload(&self) -> Result<Reloaded, VerifyError> {
            if !self.reachable {
                return Err(VerifyError::Unreachable(
                    "Fake",
                    "connection refused".into(),
                ));
            }
            *self.reloads.borrow_mut() += 1;
            let text = std::fs::read_to_string(&self.file).unwrap();
            if text.lines().any(|l| l == self.refuse) {
                return Err(VerifyError::NotLoaded("Fake"));
            }
            *self.loaded.borrow_mut() = Some(text);
            let before = *self.loaded_at.borrow();
            *self.loaded_at.borrow_mut() = jiff::Timestamp::now().as_second();
            Ok(Reloaded::since(before, None))
        }

        async fn in_force(&self) -> Result<Vec<String>, String> {
            Ok(self.expected(self.loaded.borrow().as_deref().unwrap_or("")))
        }

        fn expected(&self, config: &str) -> Vec<String> {
            config.lines().map(str::to_string).collect()
        }
    }

    async fn checked(target: &Path, text: &str) -> Checked {
        let dir = target.parent().unwrap();
        let tool = dir.join("check-tool");
        std::fs::write(&tool, "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let candidate = render::candidate_for_tests(text);
        let root = Identity::lookup("root").unwrap();
        let tool = CheckTool::promtool(&tool);
        gate::gate(
            candidate,
            target,
            tool,
            std::time::Duration::from_secs(5),
            &root,
        )
        .await
        .unwrap()
    }

    fn files(target: &Path, dir: &tempfile::TempDir) -> Files {
        Files {
            target: target.to_path_buf(),
            previous_copy: dir.path().join("state/prometheus.yml"),
            proof: dir.path().join("state/prometheus.verified"),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_file_that_does_not_load_is_rolled_back_and_the_previous_one_reloaded() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("prometheus.yml");
            let copy = dir.path().join("state/prometheus.yml");
            std::fs::write(&target, "job-a\n").unwrap();
            let program = FakeProgram::new(&target);

            let outcome = deliver(
                &program,
                checked(&target, "job-a\nrefused\n").await,
                &files(&target, &dir),
            )
            .await;

            let ConfigOutcome::RolledBack(RolledBack { error, restore }) = outcome else {
                panic!("expected a rollback, got {outcome:?}");
            };
            assert!(matches!(error, VerifyError::NotLoaded("Fake")), "{error}");
            assert_eq!(restore, Ok(()));
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "job-a\n");
            assert_eq!(std::fs::read_to_string(&copy).unwrap(), "job-a\n");
            assert_eq!(program.loaded.borrow().as_deref(), Some("job-a\n"));
            assert_eq!(
                *program.reloads.borrow(),
                2,
                "the new file, then the restored one"
            );
        });
    }

    #[test]
    fn an_unreachable_program_keeps_the_new_file_unverified() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("prometheus.yml");
            std::fs::write(&target, "job-a\n").unwrap();
            let mut program = FakeProgram::new(&target);
            program.reachable = false;

            let outcome = deliver(
                &program,
                checked(&target, "job-b\n").await,
                &files(&target, &dir),
            )
            .await;

            assert!(
                matches!(
                    outcome,
                    ConfigOutcome::InstalledUnverified(VerifyError::Unreachable(..))
                ),
                "{outcome:?}"
            );
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "job-b\n");
        });
    }

    #[test]
    fn the_same_bytes_reload_only_when_the_program_does_not_run_them() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("prometheus.yml");
            let copy = dir.path().join("copy");
            std::fs::write(&target, "job-a\n").unwrap();
            let program = FakeProgram::new(&target);

            // Installed earlier, but the program never loaded it (a lost
            // reload): the same bytes are reloaded.
            let outcome = deliver(
                &program,
                checked(&target, "job-a\n").await,
                &files(&target, &dir),
            )
            .await;
            assert!(matches!(outcome, ConfigOutcome::Applied(_)), "{outcome:?}");
            assert_eq!(*program.reloads.borrow(), 1);

            // Now it runs them: nothing to do.
            let outcome = deliver(
                &program,
                checked(&target, "job-a\n").await,
                &files(&target, &dir),
            )
            .await;
            assert!(matches!(outcome, ConfigOutcome::Unchanged), "{outcome:?}");
            assert_eq!(*program.reloads.borrow(), 1);

            // It loaded something else since (its own file, by hand).
            *program.loaded.borrow_mut() = Some("job-z\n".into());
            let outcome = deliver(
                &program,
                checked(&target, "job-a\n").await,
                &files(&target, &dir),
            )
            .await;
            assert!(matches!(outcome, ConfigOutcome::Applied(_)), "{outcome:?}");
            assert_eq!(*program.reloads.borrow(), 2);
            assert!(!copy.exists(), "nothing was replaced, so nothing was kept");

            // Unreachable: not "up to date", but unverified.
            let mut gone = FakeProgram::new(&target);
            gone.reachable = false;
            let outcome = deliver(
                &gone,
                checked(&target, "job-a\n").await,
                &files(&target, &dir),
            )
            .await;
            assert!(
                matches!(outcome, ConfigOutcome::InstalledUnverified(_)),
                "{outcome:?}"
            );
        });
    }
}
