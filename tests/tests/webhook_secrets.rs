//! Webhook signing secrets: rotation (both secrets sign during the grace period, per-job URLs
//! too) and sealing at rest with MEDIAQ_SECRETS_KEY (old plain secrets, key changes, reseal).
//! Signatures are checked with Python's hmac.

use std::time::Duration;

use mediaq_e2e::{
    bin_dir,
    receiver::{python_verify, Receiver},
    webhooks::{canceled_job, register, upload_with_webhook, with_dev, DEV},
    TestEnv,
};
use serde_json::{json, Value};

#[tokio::test]
async fn rotation_signs_with_both_secrets_and_per_job_urls_are_signed_too() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[]).await;
    let job_receiver = Receiver::start(&[]).await;
    let api = env.api_with(&DEV).await;
    // A per-job URL needs the owner's secret first.
    let resp = upload_with_webhook(&api, &job_receiver.url()).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "webhook_secret_missing");

    let (_, endpoint) = register(&api, json!({ "url": receiver.url(), "events": ["job.canceled"] })).await;
    let old = endpoint["secret"].as_str().unwrap().to_owned();
    let resp = api.client.post(api.url("/v1/webhooks/secret")).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let new = resp.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);

    let resp = upload_with_webhook(&api, &job_receiver.url()).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    api.client.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    let _worker = env.worker_with(&DEV).await;
    for rx in [&receiver, &job_receiver] {
        let got = rx.wait_for(1, Duration::from_secs(20)).await;
        let sig = got[0].header("mediaq-signature");
        assert_eq!(sig.matches("v1=").count(), 2, "both secrets sign during the grace period: {sig}");
        python_verify(&sig, &got[0].body, &old, 300).expect("the old secret still verifies");
        python_verify(&sig, &got[0].body, &new, 300).expect("the new secret verifies");
        assert_eq!(got[0].json()["data"]["job"]["id"], id.as_str());
    }
    assert_eq!(
        receiver.received()[0].header("mediaq-event-id"),
        job_receiver.received()[0].header("mediaq-event-id"),
        "one event, delivered to both"
    );
}

#[tokio::test]
async fn with_mediaq_secrets_key_signing_secrets_are_sealed_at_rest_old_ones_still_sign_and_keys_can_change() {
    const KEY: &str = "8f1c2a9b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[]).await;
    let stored = || async {
        let row: (String, Option<String>) =
            sqlx::query_as("SELECT secret, previous_secret FROM webhook_secrets").fetch_one(env.pool()).await.unwrap();
        row
    };
    // Registered before the key was set: stored as it is.
    let old = {
        let api = env.api_with(&DEV).await;
        let (_, endpoint) = register(&api, json!({ "url": receiver.url(), "events": ["job.canceled"] })).await;
        endpoint["secret"].as_str().unwrap().to_owned()
    };
    assert_eq!(stored().await.0, old);

    // With the key, a rotation seals the new secret; the old one keeps its stored form.
    let sealed = with_dev(&[("MEDIAQ_SECRETS_KEY", KEY)]);
    let api = env.api_with(&sealed).await;
    let resp = api.client.post(api.url("/v1/webhooks/secret")).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let new = resp.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let (current, previous) = stored().await;
    assert!(current.starts_with("mqenc1:") && !current.contains(&new[6..]), "{current}");
    assert_eq!(previous.as_deref(), Some(old.as_str()));

    // A worker with the key opens it and signs with both.
    canceled_job(&api).await;
    let worker = env.worker_with(&sealed).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let sig = got[0].header("mediaq-signature");
    assert_eq!(sig.matches("v1=").count(), 2, "{sig}");
    python_verify(&sig, &got[0].body, &new, 300).expect("the sealed secret, opened by the worker, signs");
    python_verify(&sig, &got[0].body, &old, 300).expect("the old one still signs during the grace period");
    drop(worker);

    // Changing the key: a reseal without the old key leaves the row and names its owner...
    const NEW_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let reseal = |vars: &[(&str, &str)]| {
        let mut cli = std::process::Command::new(bin_dir().join("mediaq-api"));
        cli.args(["secrets", "reseal"]).env("DATABASE_URL", &env.database_url).env("RUST_LOG", "warn");
        for (k, v) in vars {
            cli.env(k, v);
        }
        cli.output().expect("run mediaq-api secrets reseal")
    };
    let before = stored().await;
    let out = reseal(&[("MEDIAQ_SECRETS_KEY", NEW_KEY)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MEDIAQ_SECRETS_KEY_PREVIOUS"), "{out:?}");
    assert_eq!(stored().await, before);
    // ...with it, both secrets are sealed with the new key, and a worker that has only the new
    // key signs with both.
    let out = reseal(&[("MEDIAQ_SECRETS_KEY", NEW_KEY), ("MEDIAQ_SECRETS_KEY_PREVIOUS", KEY)]);
    assert!(out.status.success(), "{out:?}");
    let (current, previous) = stored().await;
    let previous = previous.unwrap();
    assert!(current.starts_with("mqenc1:") && current != before.0, "{current}");
    assert!(previous.starts_with("mqenc1:") && !previous.contains(&old[6..]), "{previous}");
    canceled_job(&api).await;
    let _worker = env.worker_with(&with_dev(&[("MEDIAQ_SECRETS_KEY", NEW_KEY)])).await;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let sig = got[1].header("mediaq-signature");
    assert_eq!(sig.matches("v1=").count(), 2, "{sig}");
    python_verify(&sig, &got[1].body, &new, 300).expect("resealed current secret");
    python_verify(&sig, &got[1].body, &old, 300).expect("resealed previous secret");
}
