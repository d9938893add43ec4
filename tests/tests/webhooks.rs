//! Signed webhooks against a real receiver on loopback (allowed through the development
//! override): one delivery per terminal job, signatures checked by Python's hmac, retries with
//! growing gaps, the circuit breaker, kill -9 mid-delivery, and SSRF refusals. Secrets (rotation,
//! sealing at rest) are in webhook_secrets.rs.

use std::time::Duration;

use mediaq_e2e::{
    bin_dir, fixtures,
    receiver::{python_verify, Receiver, Reply},
    webhooks::{canceled_job, event_ids, get, register, upload, upload_with_webhook, with_dev, DEV},
    TestEnv,
};
use serde_json::json;

#[tokio::test]
async fn each_terminal_job_gets_exactly_one_signed_delivery() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[]).await;
    let api = env.api_with(&DEV).await;
    let (status, endpoint) = register(&api, json!({ "url": receiver.url() })).await;
    assert_eq!(status, 201, "{endpoint}");
    let secret = endpoint["secret"].as_str().expect("the secret is shown at creation").to_owned();
    assert_eq!(endpoint["breaker"]["state"], "closed");
    let listed = get(&api, "/v1/webhooks").await;
    assert!(listed.to_string().find(&secret).is_none(), "the secret is never shown again");

    let canceled = canceled_job(&api).await;
    let worker = env.worker_with(&with_dev(&[("MEDIAQ_MAX_DURATION", "10s")])).await;
    let succeeded = upload(&api, &fixtures::VP8_VORBIS).await;
    let failed = upload(&api, &fixtures::LONG_VP8).await; // 20 s: duration_exceeded
    for id in [&succeeded, &failed] {
        api.wait_terminal(id, Duration::from_secs(90)).await;
    }
    // Expiry: age the finished job past retention and run the janitor once.
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '30 days' WHERE id = $1::uuid")
        .bind(&succeeded)
        .execute(env.pool())
        .await
        .unwrap();
    let out = std::process::Command::new(bin_dir().join("mediaq-worker"))
        .arg("janitor")
        .env("DATABASE_URL", &env.database_url)
        .env("MEDIAQ_STORAGE_DIR", env.storage_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    receiver.wait_for(4, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // time for any duplicate to show
    let got = receiver.received();
    assert_eq!(got.len(), 4, "one delivery per terminal transition: {:?}", event_ids(&got));
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(r.header("mediaq-event-id"), body["id"].as_str().unwrap(), "event id header = body id");
            assert_eq!(r.header("content-type"), "application/json");
            assert!(body["created"].as_i64().unwrap() > 1_700_000_000);
            assert_eq!(body["data"]["job"]["id"], body["data"]["job"]["links"]["self"].as_str().unwrap()[9..]);
            let sig = r.header("mediaq-signature");
            python_verify(&sig, &r.body, &secret, 300).unwrap_or_else(|e| panic!("signature refused ({e}): {sig}"));
            // Tampered body or a stale timestamp fail the same independent check.
            let mut tampered = r.body.clone();
            tampered[10] ^= 1;
            assert_eq!(python_verify(&sig, &tampered, &secret, 300), Err("mismatch".into()));
            let stale = sig.replacen("t=", "t=1", 1); // a timestamp far in the future
            assert!(python_verify(&stale, &r.body, &secret, 300).is_err());
            assert_eq!(python_verify(&sig, &r.body, "whsec_wrong", 300), Err("mismatch".into()));
            (body["type"].as_str().unwrap().to_owned(), body["data"]["job"]["id"].as_str().unwrap().to_owned())
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        ("job.canceled".to_owned(), canceled.clone()),
        ("job.expired".to_owned(), succeeded.clone()),
        ("job.failed".to_owned(), failed.clone()),
        ("job.succeeded".to_owned(), succeeded.clone()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    let failed_event = got.iter().map(|r| r.json()).find(|b| b["type"] == "job.failed").unwrap();
    assert_eq!(failed_event["data"]["job"]["error"]["code"], "duration_exceeded", "{failed_event}");
    let ok_event = got.iter().map(|r| r.json()).find(|b| b["type"] == "job.succeeded").unwrap();
    assert_eq!(ok_event["data"]["job"]["status"], "succeeded", "the job as it was at the event: {ok_event}");
    assert!(ok_event["data"]["job"]["output"]["size_bytes"].as_u64().unwrap() > 0);

    // The delivery log shows each attempt with its response.
    let id = endpoint["id"].as_str().unwrap();
    let log = get(&api, &format!("/v1/webhooks/{id}/deliveries")).await;
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 4, "{log}");
    for d in deliveries {
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["attempt_history"][0]["response_status"], 200, "{d}");
        assert!(d["attempt_history"][0]["latency_ms"].as_i64().is_some(), "{d}");
    }
    drop(worker);
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_with_growing_gaps_then_success() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[Reply::Status(500), Reply::Status(500), Reply::Status(500)]).await;
    let api = env.api_with(&DEV).await;
    let (_, endpoint) = register(&api, json!({ "url": receiver.url(), "events": ["job.canceled"] })).await;
    let job = canceled_job(&api).await;
    let _worker = env.worker_with(&with_dev(&[("MEDIAQ_WEBHOOK_RETRY_BASE", "1s")])).await;
    let got = receiver.wait_for(4, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 4);
    let ids = event_ids(&got);
    assert!(ids.iter().all(|id| id == &ids[0]), "one event id across retries: {ids:?}");
    assert_eq!(got[0].json()["data"]["job"]["id"], job.as_str());
    let gaps: Vec<f64> = got.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64()).collect();
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "gaps grow: {gaps:?}");
    assert!(gaps[0] >= 0.7 && gaps[2] <= 6.5, "about 1, 2 and 4 s: {gaps:?}");
    let attempts: Vec<String> = got.iter().map(|r| r.header("mediaq-delivery-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);

    let id = endpoint["id"].as_str().unwrap();
    let log = mediaq_e2e::wait_for(Duration::from_secs(10), "the delivery recorded", || async {
        let log = get(&api, &format!("/v1/webhooks/{id}/deliveries")).await;
        (log["deliveries"][0]["status"] == "succeeded").then_some(log)
    })
    .await;
    let history = log["deliveries"][0]["attempt_history"].as_array().unwrap().clone();
    let codes: Vec<i64> = history.iter().map(|a| a["response_status"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 500, 500, 200], "{log}");
    assert_eq!(log["endpoint"]["breaker"]["state"], "closed", "3 failures stay under the threshold of 5");

    // A delivery can be sent again: same event id, a new delivery.
    let delivery = log["deliveries"][0]["id"].as_str().unwrap();
    let resp =
        api.client.post(api.url(&format!("/v1/webhooks/{id}/deliveries/{delivery}/resend"))).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let got = receiver.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(got[4].header("mediaq-event-id"), ids[0]);
}

#[tokio::test]
async fn a_dead_receiver_opens_the_breaker_and_a_revived_one_closes_it() {
    let env = TestEnv::new().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead); // nothing listens: connections are refused
    let api = env.api_with(&DEV).await;
    let (_, endpoint) =
        register(&api, json!({ "url": format!("http://{addr}/hook"), "events": ["job.canceled"] })).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let _worker = env
        .worker_with(&with_dev(&[
            ("MEDIAQ_WEBHOOK_RETRY_BASE", "200ms"),
            ("MEDIAQ_WEBHOOK_BREAKER_THRESHOLD", "3"),
            ("MEDIAQ_WEBHOOK_BREAKER_COOLDOWN", "3s"),
        ]))
        .await;
    for _ in 0..3 {
        canceled_job(&api).await;
    }
    let opened = mediaq_e2e::wait_for(Duration::from_secs(20), "the breaker to open", || async {
        let e = get(&api, &format!("/v1/webhooks/{id}")).await;
        (e["breaker"]["state"] == "open").then_some(e)
    })
    .await;
    assert!(opened["breaker"]["consecutive_failures"].as_i64().unwrap() >= 3, "{opened}");
    assert!(opened["breaker"]["retry_at"].is_string(), "{opened}");
    // While open, nothing is attempted.
    let attempts = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_delivery_attempts")
            .fetch_one(env.pool())
            .await
            .unwrap()
    };
    let before = attempts().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(attempts().await, before, "an open circuit sends nothing before its cool-down");

    let receiver = Receiver::start_on(addr, &[]).await;
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "the probe, then the rest of the backlog");
    let closed = mediaq_e2e::wait_for(Duration::from_secs(10), "the breaker to close", || async {
        let e = get(&api, &format!("/v1/webhooks/{id}")).await;
        (e["breaker"]["state"] == "closed").then_some(e)
    })
    .await;
    assert_eq!(closed["breaker"]["consecutive_failures"], 0);
}

#[tokio::test]
async fn kill_9_mid_delivery_redelivers_the_same_event_after_restart() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(&[Reply::Hang(Duration::from_secs(60))]).await;
    let api = env.api_with(&DEV).await;
    register(&api, json!({ "url": receiver.url(), "events": ["job.canceled"] })).await;
    canceled_job(&api).await;
    let settings = with_dev(&[("MEDIAQ_WEBHOOK_TIMEOUT", "3s")]);
    let mut worker = env.worker_with(&settings).await;
    let first = receiver.wait_for(1, Duration::from_secs(20)).await;
    worker.service.signal(libc::SIGKILL);
    worker.service.wait_exit(Duration::from_secs(10)).await;
    let _worker = env.worker_with(&settings).await;
    let got = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got[1].header("mediaq-event-id"), first[0].header("mediaq-event-id"));
    assert_eq!(got[1].body, first[0].body, "the same event body");
    let status: String = mediaq_e2e::wait_for(Duration::from_secs(10), "the delivery recorded", || async {
        let s: String =
            sqlx::query_scalar("SELECT status FROM webhook_deliveries").fetch_one(env.pool()).await.unwrap();
        (s != "pending").then_some(s)
    })
    .await;
    assert_eq!(status, "succeeded");
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT error FROM webhook_delivery_attempts ORDER BY attempt")
            .fetch_all(env.pool())
            .await
            .unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors[0].as_deref().unwrap_or_default().starts_with("interrupted"), "{errors:?}");
    assert_eq!(errors[1], None);
}

#[tokio::test]
async fn non_public_urls_are_refused_without_the_override() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://localhost/hook",
        "http://example.com/hook",
        "https://user:pw@example.com/hook",
    ] {
        let (status, body) = register(&api, json!({ "url": url })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("webhook_url_refused")), "{url}: {body}");
    }
    // The refusal says the host is not public, never what an internal name resolves to.
    let (_, body) = register(&api, json!({ "url": "https://localhost/hook" })).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a public address") && !message.contains("127.0.0.1"), "{message}");
    assert!(!message.contains("::1"), "{message}");
    let resp = upload_with_webhook(&api, "https://169.254.169.254/").await;
    assert_eq!(resp.status(), 422);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(count, 0, "a refused webhook_url creates no job");
    let (status, body) = register(&api, json!({ "url": "https://example.com/h", "events": ["job.nope"] })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");

    // The check runs again at connect time: an endpoint registered through an API that allowed
    // loopback is refused by a worker that does not.
    let receiver = Receiver::start(&[]).await;
    let dev_api = env.api_with(&DEV).await;
    let (_, endpoint) = register(&dev_api, json!({ "url": receiver.url(), "events": ["job.canceled"] })).await;
    canceled_job(&dev_api).await;
    let _worker = env.worker_with(&[("MEDIAQ_WEBHOOK_ALLOW_HTTP", "true")]).await;
    let id = endpoint["id"].as_str().unwrap();
    let log = mediaq_e2e::wait_for(Duration::from_secs(20), "a refused attempt", || async {
        let log = get(&dev_api, &format!("/v1/webhooks/{id}/deliveries")).await;
        log["deliveries"][0]["last_error"].is_string().then_some(log)
    })
    .await;
    let error = log["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("not a public address"), "{error}");
    assert!(receiver.received().is_empty(), "nothing reached the loopback receiver");
}
