//! Start-up self-check: runs the transcoder in `--self-test` mode under the production spawn
//! path, learns which sandbox layers are active, logs them, and refuses to start in strict mode
//! when one (other than namespaces, which Docker's default profile forbids) is missing.

use std::{ffi::OsString, io::BufRead, path::Path};

use serde::Serialize;

use crate::{
    config::{SandboxMode, WorkerConfig},
    jobdir::JobDir,
    protocol::{Event, SandboxLayers},
    spawn::{self, ChildSpec},
};

/// Every layer, worker side and child side.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LayerReport {
    /// New network (and user) namespaces: the child has no network at all.
    pub namespaces: bool,
    /// The child runs as an unprivileged uid/gid (only applicable when the worker is root).
    pub unprivileged_user: Option<bool>,
    pub rlimits: bool,
    #[serde(flatten)]
    pub child: SandboxLayers,
}

impl LayerReport {
    /// Layers missing that strict mode requires.
    pub fn missing_required(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !matches!(self.child.landlock.as_str(), "full" | "partial") {
            missing.push("landlock");
        }
        if !self.child.seccomp {
            missing.push("seccomp");
        }
        if !self.child.no_new_privs {
            missing.push("no_new_privs");
        }
        if !self.rlimits {
            missing.push("rlimits");
        }
        if self.unprivileged_user == Some(false) {
            missing.push("unprivileged_user");
        }
        missing
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelfCheckError {
    #[error("the transcoder self-test could not run: {0}")]
    Run(String),
    #[error("sandbox layers missing ({missing}); refusing to start with MEDIAQ_SANDBOX=strict (set MEDIAQ_SANDBOX=best-effort to run anyway; see docs/SECURITY.md)")]
    Missing { missing: String },
}

/// Runs the self-test, first with namespaces, then without when the kernel refuses them.
pub fn run(config: &WorkerConfig, work_dir: &Path) -> Result<LayerReport, SelfCheckError> {
    let owner = if spawn::is_root() { config.sandbox.user } else { None };
    let scratch = JobDir::create(work_dir, "selftest-", owner).map_err(|e| SelfCheckError::Run(e.to_string()))?;
    let output = scratch.path().join("self-test.mp4");
    let mut spec = crate::attempt::child_spec(config, true, scratch.path(), &output);
    spec.args.insert(0, OsString::from("--self-test"));
    spec.namespaces = true;
    // Blocking I/O at start-up, before any job is taken.
    let self_test = |spec: &ChildSpec| tokio::task::block_in_place(|| self_test(spec));
    let (layers, namespaces) = match self_test(&spec) {
        Ok(layers) => (layers, true),
        Err(e) => {
            tracing::warn!(error = %e, "the child cannot have its own namespaces here (e.g. Docker's default seccomp profile); running without that layer");
            spec.namespaces = false;
            (self_test(&spec).map_err(SelfCheckError::Run)?, false)
        }
    };
    let report = LayerReport {
        namespaces,
        unprivileged_user: spawn::is_root().then_some(config.sandbox.user.is_some()),
        rlimits: true,
        child: layers,
    };
    let missing = report.missing_required();
    tracing::info!(layers = %serde_json::to_string(&report).unwrap_or_default(), "sandbox layers");
    if !missing.is_empty() {
        if config.sandbox.mode == SandboxMode::Strict {
            return Err(SelfCheckError::Missing { missing: missing.join(", ") });
        }
        tracing::warn!(missing = %missing.join(", "), "running with sandbox layers missing (MEDIAQ_SANDBOX=best-effort)");
    }
    Ok(report)
}

fn self_test(spec: &ChildSpec) -> Result<SandboxLayers, String> {
    let mut child = spawn::spawn(spec).map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().expect("piped");
    let mut layers = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Ok(Event::Sandbox { layers: l }) = serde_json::from_str(&line) {
            layers = Some(l);
        }
    }
    let pid = child.pid;
    let (status, _) = tokio::runtime::Handle::current().block_on(child.wait()).map_err(|e| e.to_string())?;
    match layers {
        Some(l) if status.success() => Ok(l),
        _ => Err(format!("self-test (pid {pid}) ended with {status} without reporting its sandbox")),
    }
}
