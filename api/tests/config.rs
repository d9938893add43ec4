//! Start-up parses all configuration before it listens: a bad value, even of a setting used only
//! after the listener is up (webhooks, the sealing key), stops `mediaq-api` with a message
//! naming the variable and a non-zero status, and it never prints (or serves) "listening".
//! (Before, the webhook settings were read after "listening" was printed.)

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

/// `mediaq-api` with a clean environment: a database URL that is never dialled (the pool is
/// lazy), storage in a fresh directory, any free port.
fn api(storage: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mediaq-api"));
    command
        .env_clear()
        .env("DATABASE_URL", "postgres://unused@127.0.0.1:1/unused")
        .env("MEDIAQ_STORAGE_DIR", storage)
        .env("MEDIAQ_BIND", "127.0.0.1:0")
        .stdin(Stdio::null());
    command
}

#[test]
fn a_bad_late_setting_stops_the_api_before_it_listens() {
    let storage = tempfile::tempdir().unwrap();
    // The same set-up without a bad value does listen, so the refusals below are the values'.
    let mut good = api(storage.path()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(good.stdout.take().unwrap()).read_line(&mut first).unwrap();
    good.kill().unwrap();
    good.wait().unwrap();
    assert!(first.starts_with("mediaq-api listening on http://127.0.0.1:"), "{first:?}");

    let key = "00".repeat(32);
    for (var, value, other) in [
        ("MEDIAQ_WEBHOOK_TIMEOUT", "soon", None),
        ("MEDIAQ_WEBHOOK_ALLOWED_NETWORKS", "not-a-network", None),
        ("MEDIAQ_WEBHOOK_ALLOW_HTTP", "maybe", None),
        ("MEDIAQ_WEBHOOK_ROTATION_GRACE", "5 fortnights", None),
        ("MEDIAQ_SECRETS_KEY", "abc", None),
        ("MEDIAQ_SECRETS_KEY_PREVIOUS", "zz", Some(("MEDIAQ_SECRETS_KEY", key.as_str()))),
        ("MEDIAQ_KEY_CACHE_TTL", "forever", None),
        ("MEDIAQ_CORS_ORIGINS", "*", None),
    ] {
        let mut command = api(storage.path());
        command.env(var, value);
        if let Some((other, v)) = other {
            command.env(other, v);
        }
        let out = command.output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(!stdout.contains("listening") && !stderr.contains("listening"), "{var}={value}: {stdout} {stderr}");
        assert!(stderr.contains(var), "{var}={value}: the message does not name the variable: {stderr}");
        if var.starts_with("MEDIAQ_SECRETS_KEY") {
            assert!(!stderr.contains(value), "{var}: a key's value is never shown: {stderr}");
        } else {
            assert!(stderr.contains(value), "{var}={value}: {stderr}");
        }
    }
}

#[test]
fn a_previous_key_without_a_current_one_is_refused() {
    let storage = tempfile::tempdir().unwrap();
    let out = api(storage.path()).env("MEDIAQ_SECRETS_KEY_PREVIOUS", "00".repeat(32)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("MEDIAQ_SECRETS_KEY"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

#[test]
fn an_empty_variable_counts_as_unset_and_a_missing_database_url_is_named() {
    let storage = tempfile::tempdir().unwrap();
    // Empty: the default applies (then the API listens, as above), rather than an error.
    let mut empty = api(storage.path()).env("MEDIAQ_UPLOAD_IDLE_TIMEOUT", "").stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(empty.stdout.take().unwrap()).read_line(&mut first).unwrap();
    empty.kill().unwrap();
    empty.wait().unwrap();
    assert!(first.starts_with("mediaq-api listening"), "{first:?}");

    let out = api(storage.path()).env_remove("DATABASE_URL").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("DATABASE_URL must be set"), "{stderr}");
}
