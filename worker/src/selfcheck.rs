//! Start-up self-check and the sandbox policy every attempt is held to.
//!
//! At start-up the worker runs the transcoder in `--self-test` mode under the production spawn
//! path, learns which sandbox layers are active (namespaces are tried, then given up where the
//! kernel or the container refuses them), logs them, and refuses to start in strict mode when a
//! required layer is missing. The resulting [`SandboxPolicy`] then checks the sandbox report of
//! every attempt's child: a child whose sandbox has lost a required layer (or a namespace that
//! the self-check found available) is stopped before it reads its input.

use std::{ffi::OsString, io::BufRead, io::Read, path::Path};

use mediaq_protocol::{Event, SandboxLayers};
use serde::Serialize;

use crate::{
    config::{SandboxMode, WorkerConfig},
    jobdir::JobDir,
    spawn::{self, ChildSpec, Namespaces},
};

/// Every layer, worker side and child side.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LayerReport {
    /// New network (and user) namespaces: the child has no network at all.
    pub namespaces: bool,
    /// The child runs as an unprivileged uid/gid (only applicable when the worker is root).
    pub unprivileged_user: Option<bool>,
    #[serde(flatten)]
    pub child: SandboxLayers,
}

/// What each attempt's child must show in its sandbox report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Stop a child that lacks a required layer (MEDIAQ_SANDBOX=strict); otherwise only log it.
    pub strict: bool,
    /// The namespaces the child is given (found available at start-up).
    pub namespaces: Namespaces,
}

impl SandboxPolicy {
    /// The layers of `child` that this policy requires and it lacks. Always required: Landlock,
    /// seccomp, no_new_privs and the rlimits; the PID namespace when the child was given one.
    pub fn missing(&self, child: &SandboxLayers) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !matches!(child.landlock.as_str(), "full" | "partial") {
            missing.push("landlock");
        }
        if !child.seccomp {
            missing.push("seccomp");
        }
        if !child.no_new_privs {
            missing.push("no_new_privs");
        }
        if !child.rlimits {
            missing.push("rlimits");
        }
        if self.namespaces.pid && !child.pid_namespace {
            missing.push("pid_namespace");
        }
        missing
    }
}

impl LayerReport {
    /// Layers missing that strict mode requires.
    pub fn missing_required(&self) -> Vec<&'static str> {
        let policy = SandboxPolicy { strict: true, namespaces: Namespaces::NONE };
        let mut missing = policy.missing(&self.child);
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

/// The self-check's findings: the layers, and the policy attempts are held to.
#[derive(Debug, Clone)]
pub struct SelfCheck {
    pub report: LayerReport,
    pub policy: SandboxPolicy,
}

/// Runs the self-test with network and PID namespaces, then with the network namespace only,
/// then with none, keeping the first that the kernel (or container) allows.
pub fn run(config: &WorkerConfig, work_dir: &Path) -> Result<SelfCheck, SelfCheckError> {
    let owner = if spawn::is_root() { config.sandbox.user } else { None };
    let scratch = JobDir::create(work_dir, "selftest-", owner).map_err(|e| SelfCheckError::Run(e.to_string()))?;
    let output = scratch.path().join("self-test.mp4");
    let mut spec = crate::child_spec::child_spec(config, Namespaces::ALL, scratch.path(), &output);
    spec.args.insert(0, OsString::from("--self-test"));
    // Blocking I/O at start-up, before any job is taken.
    let self_test = |spec: &ChildSpec| tokio::task::block_in_place(|| self_test(spec));
    let mut tried = Vec::new();
    let mut found = None;
    for namespaces in [Namespaces::ALL, Namespaces { net: true, pid: false }, Namespaces::NONE] {
        spec.namespaces = namespaces;
        match self_test(&spec) {
            Ok(layers) => {
                found = Some((layers, namespaces));
                break;
            }
            Err(e) => tried.push(format!("{namespaces:?}: {e}")),
        }
    }
    let Some((layers, namespaces)) = found else {
        return Err(SelfCheckError::Run(tried.join("; ")));
    };
    if !tried.is_empty() {
        tracing::warn!(refused = %tried.join("; "), ?namespaces, "the child cannot have every namespace here (e.g. Docker's default seccomp profile); running without the refused ones");
    }
    let report = LayerReport {
        namespaces: namespaces.net,
        unprivileged_user: spawn::is_root().then_some(config.sandbox.user.is_some()),
        child: layers,
    };
    let missing = report.missing_required();
    tracing::info!(layers = %serde_json::to_string(&report).unwrap_or_default(), "sandbox layers");
    let strict = config.sandbox.mode == SandboxMode::Strict;
    if !missing.is_empty() {
        if strict {
            return Err(SelfCheckError::Missing { missing: missing.join(", ") });
        }
        tracing::warn!(missing = %missing.join(", "), "running with sandbox layers missing (MEDIAQ_SANDBOX=best-effort)");
    }
    Ok(SelfCheck { report, policy: SandboxPolicy { strict, namespaces } })
}

/// Runs one self-test child; on failure the error carries the end of its stderr.
fn self_test(spec: &ChildSpec) -> Result<SandboxLayers, String> {
    let mut child = spawn::spawn(spec, None).map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut layers = None;
    for line in std::io::BufReader::new(stdout.take(1 << 20)).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Ok(Event::Sandbox { layers: l }) = serde_json::from_str(&line) {
            layers = Some(l);
        }
    }
    let pid = child.pid;
    let (status, _) = tokio::runtime::Handle::current().block_on(child.wait()).map_err(|e| e.to_string())?;
    let stderr = reader.join().unwrap_or_default();
    match layers {
        Some(l) if status.success() => Ok(l),
        _ => {
            let tail: String = stderr.trim().chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
            Err(format!(
                "self-test (pid {pid}) ended with {status} without reporting its sandbox; its stderr: {tail:?}"
            ))
        }
    }
}
