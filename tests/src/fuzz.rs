//! Running schemathesis (from the project's venv, `ensure_api_tools` in scripts/lib.sh) against
//! a running API's `/openapi.json`, over loopback.

use std::{path::PathBuf, time::Duration};

/// The venv's bin directory: `MEDIAQ_VENV`, else `.mediaq/venv` in the checkout.
pub fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("MEDIAQ_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.mediaq/venv"));
    let path = venv.join("bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `source scripts/lib.sh; ensure_api_tools` (scripts/test.sh does)",
        path.display()
    );
    path
}

pub struct FuzzRun {
    pub success: bool,
    pub output: String,
}

/// The generator's seed: MEDIAQ_FUZZ_SEED (any other seed must pass too), else 18.
fn seed() -> String {
    std::env::var("MEDIAQ_FUZZ_SEED").ok().filter(|s| s.parse::<u64>().is_ok()).unwrap_or_else(|| "18".into())
}

/// `schemathesis run` with every check, for `seconds`, against `base_url` with `key`.
pub async fn schemathesis(base_url: &str, key: &str, seconds: u64, report_dir: &std::path::Path) -> FuzzRun {
    let mut cmd = tokio::process::Command::new(venv_bin("schemathesis"));
    cmd.arg("--config-file")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml"))
        .arg("run")
        .arg(format!("{base_url}/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all"])
        .args(["--max-time", &seconds.to_string()])
        .args(["--workers", "2", "--seed", &seed(), "--suppress-health-check", "all", "--request-timeout", "20"])
        .args(["--report", "junit", "--report-dir"])
        .arg(report_dir)
        .env("NO_COLOR", "1")
        // tests/schemathesis_hooks.py: how to generate a tus chunk's bytes.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", env!("CARGO_MANIFEST_DIR"))
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(seconds + 120), cmd.output())
        .await
        .expect("schemathesis finishes within its budget")
        .expect("run schemathesis");
    FuzzRun {
        success: out.status.success(),
        output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    }
}
