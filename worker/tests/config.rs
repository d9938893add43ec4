//! The worker validates the transcoder's settings with the child's own definitions: a value the
//! child would refuse stops the worker at start-up, with a message naming the variable (before,
//! MEDIAQ_TRANSCODE_THREADS=0 passed the worker's check, failed the child's self-test, and the
//! worker refused to start with a misleading message about the sandbox). Every other setting is
//! parsed in the same place, before the self-check (the webhook settings were read after it).

use std::process::Command;

#[test]
fn a_setting_the_child_would_refuse_stops_the_worker_naming_its_variable() {
    for (var, value) in [
        ("MEDIAQ_TRANSCODE_THREADS", "0"),
        ("MEDIAQ_X264_CRF", "60"),
        ("MEDIAQ_X264_PRESET", "warp"),
        // Read after the self-check before: now parsed with everything else, first.
        ("MEDIAQ_WEBHOOK_TIMEOUT", "soon"),
        ("MEDIAQ_WEBHOOK_CONCURRENCY", "-1"),
        ("MEDIAQ_MAX_ATTEMPTS", "0"),
        ("MEDIAQ_WORKER_CONCURRENCY", "0"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mediaq-worker"))
            .env_clear()
            .env("DATABASE_URL", "postgres://unused@127.0.0.1:1/unused")
            .env(var, value)
            .output()
            .expect("the worker runs");
        assert!(!out.status.success(), "{var}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var) && stderr.contains(value), "{var}={value}: {stderr}");
        assert!(!stderr.contains("sandbox"), "{var}={value}: {stderr}");
    }
}
