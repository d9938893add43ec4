//! The audit trail through the API, operator routes, a 500 that reveals nothing, and logs
//! that never contain a credential.

use std::time::Duration;

use mediaq_e2e::{
    fixtures,
    services::{client_with_key, create_key},
    TestEnv,
};
use serde_json::{json, Value};

fn actions(events: &Value) -> Vec<String> {
    events["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn trails_for_owners_and_admins_and_operator_routes() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let admin_key = create_key(&env.database_url, "ops", "admin", "ops");
    let admin = client_with_key(&admin_key);
    let stranger = client_with_key(&create_key(&env.database_url, "eve", "jobs:read,jobs:write", "eve"));

    // A token-made job, converted, downloaded, then deleted.
    let minted: Value =
        api.client.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    let browser = client_with_key(&token);
    let job: Value = browser
        .post(api.url("/v1/jobs"))
        .header("content-type", "video/webm")
        .body(fixtures::bytes(&fixtures::VP8_VORBIS))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(browser.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap().status(), 200);
    assert_eq!(api.client.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().status(), 200);

    let trail: Value =
        api.client.get(api.url(&format!("/v1/jobs/{id}/events"))).send().await.unwrap().json().await.unwrap();
    let seen = actions(&trail);
    for expected in ["token.used", "job.created", "job.started", "job.succeeded", "job.downloaded", "job.files_deleted"]
    {
        assert!(seen.contains(&expected.to_owned()), "{expected} missing from {seen:?}");
    }
    let created = trail["events"].as_array().unwrap().iter().find(|e| e["action"] == "job.created").unwrap();
    assert!(created["actor"].as_str().unwrap().starts_with("token:"), "{created}");
    assert!(created["request_id"].is_string() && created["client_ip"] == "127.0.0.1", "{created}");
    // The token reads its own job's trail; strangers get 404.
    assert_eq!(browser.get(api.url(&format!("/v1/jobs/{id}/events"))).send().await.unwrap().status(), 200);
    assert_eq!(stranger.get(api.url(&format!("/v1/jobs/{id}/events"))).send().await.unwrap().status(), 404);

    // Everything, for admins only, page by page.
    assert_eq!(api.client.get(api.url("/v1/audit")).send().await.unwrap().status(), 403);
    let first: Value = admin.get(api.url("/v1/audit?limit=3")).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_i64().unwrap();
    let rest: Value =
        admin.get(api.url(&format!("/v1/audit?limit=500&cursor={cursor}"))).send().await.unwrap().json().await.unwrap();
    let all: Vec<String> = actions(&first).into_iter().chain(actions(&rest)).collect();
    for expected in ["key.created", "token.created", "job.created"] {
        assert!(all.contains(&expected.to_owned()), "{expected} missing from {all:?}");
    }

    // Operator routes.
    assert_eq!(api.client.get(api.url("/v1/admin/stats")).send().await.unwrap().status(), 403);
    let stats: Value = admin.get(api.url("/v1/admin/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["jobs_by_status"]["succeeded"], 1, "{stats}");
    let resp = admin.post(api.url(&format!("/v1/admin/jobs/{id}/requeue"))).send().await.unwrap();
    assert_eq!(resp.status(), 409, "only failed jobs are requeued");

    // No credential ever reaches the logs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = api.service.log_text();
    for secret in [&env.api_key, &admin_key, &token] {
        assert!(!log.contains(&secret[20..]), "a credential leaked into the log");
    }
}

#[tokio::test]
async fn an_internal_error_reveals_nothing_and_keeps_its_headers() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let job: Value = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    // Break the database under the API: the next status read fails inside a query.
    sqlx::query("DROP TABLE job_attempts CASCADE").execute(env.pool()).await.unwrap();
    let resp = api.client.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let headers = resp.headers().clone();
    for name in
        ["content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy", "x-request-id"]
    {
        assert!(headers.contains_key(name), "{name} on a 500");
    }
    let body = resp.text().await.unwrap();
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["error"]["code"], "internal_error");
    for leak in ["job_attempts", "relation", "sqlx", "SELECT", "/tmp", "postgres"] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
    // The details are in the log, under the request id.
    let rid = headers["x-request-id"].to_str().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(api.service.log_text().lines().any(|l| l.contains(rid) && l.contains("job_attempts")));
}

#[tokio::test]
async fn the_audit_trail_is_append_only() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    assert_eq!(api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.status(), 202);
    let update = sqlx::query("UPDATE audit_events SET actor = 'mallory'").execute(env.pool()).await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM audit_events").execute(env.pool()).await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    let truncate = sqlx::query("TRUNCATE audit_events").execute(env.pool()).await;
    assert!(truncate.is_err());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action IN ('key.created', 'job.created')")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(n, 2, "nothing was changed or removed");
}

/// An unauthenticated flood: every refusal is counted (in /metrics at once, in the audit trail
/// when the window ends or the API stops), but as a handful of rows, not one per request.
#[tokio::test]
async fn a_flood_of_refusals_is_audited_as_a_handful_of_counted_rows() {
    let env = TestEnv::new().await;
    let mut api = env.api().await;
    let anonymous = reqwest::Client::new();
    let url = api.url("/v1/jobs");
    // A well-formed key that no longer works (its id is recorded), beside missing and malformed ones.
    let forged = create_key(&env.database_url, "gone", "jobs:read", "tester");
    let out = std::process::Command::new(mediaq_e2e::bin_dir().join("mediaq-api"))
        .args(["keys", "revoke", &forged[3..19]])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .unwrap();
    assert!(out.status.success());
    let sent = 1500;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(env.pool()).await.unwrap();
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let (client, url, forged) = (anonymous.clone(), url.clone(), forged.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..sent / 10 {
                let req = match (worker + i) % 3 {
                    0 => client.get(&url),
                    1 => client.get(&url).bearer_auth(&forged),
                    _ => client.get(&url).header("authorization", "Bearer nonsense"),
                };
                assert_eq!(req.send().await.unwrap().status(), 401);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let text = api.client.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("mediaq_requests_refused_total{") && l.contains("action=\"auth.failed\""))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, sent as f64, "{text}");
    let during: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(env.pool()).await.unwrap();
    assert!(during - before <= 4, "{} rows written during the flood", during - before);

    // Stopping the API writes the open window.
    api.service.signal(libc::SIGTERM);
    assert!(api.service.wait_exit(Duration::from_secs(20)).await.success());
    let (rows, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum((details->>'count')::bigint), 0)::bigint FROM audit_events
         WHERE action = 'auth.failed'",
    )
    .fetch_one(env.pool())
    .await
    .unwrap();
    assert_eq!(total, sent as i64, "every refusal is counted");
    assert!((1..=2).contains(&rows), "{rows} rows (one per address and minute)");
    let row: Value = sqlx::query_scalar(
        "SELECT jsonb_build_object('ip', host(client_ip), 'details', details) FROM audit_events
         WHERE action = 'auth.failed' ORDER BY id LIMIT 1",
    )
    .fetch_one(env.pool())
    .await
    .unwrap();
    assert_eq!(row["ip"], "127.0.0.1", "{row}");
    assert!(row["details"]["reasons"]["missing"].as_i64().unwrap() > 0, "{row}");
    assert_eq!(row["details"]["key_ids"][0], &forged[3..19], "{row}");
}

/// No range request reads an output unaudited (a suffix range `bytes=-N` included), and a
/// player's many range requests make one row, not one each.
#[tokio::test]
async fn every_download_is_audited_once_per_player() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let job: Value = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, done) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded");
    let downloads = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM audit_events WHERE action = 'job.downloaded' AND job_id = $1::uuid",
        )
        .bind(&id)
        .fetch_one(env.pool())
        .await
        .unwrap()
    };
    let url = api.url(&format!("/v1/jobs/{id}/output"));
    // A suffix range: the end of the file, which did not start at byte 0 and went unaudited.
    let resp = api.client.get(&url).header("range", "bytes=-1000").send().await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().len(), 1000);
    assert_eq!(downloads().await, 1, "a suffix range is a download");
    // A player seeking: many ranges, still one row.
    for range in ["bytes=0-", "bytes=100-199", "bytes=-16", "bytes=1-"] {
        assert_eq!(api.client.get(&url).header("range", range).send().await.unwrap().status(), 206, "{range}");
    }
    assert_eq!(downloads().await, 1, "one row per player, not per range request");
    // Another caller reading it is another row (an admin).
    let admin = client_with_key(&create_key(&env.database_url, "ops", "admin", "ops"));
    assert_eq!(admin.get(&url).header("range", "bytes=1-").send().await.unwrap().status(), 206);
    assert_eq!(downloads().await, 2);
}

/// A poster download is audited like the MP4's (issue #26, item 6): one `job.poster_downloaded`
/// row per actor and job per window, whatever it re-fetches, another actor another row; it does
/// not cover (nor is it covered by) the MP4's `job.downloaded`.
#[tokio::test]
async fn poster_downloads_are_audited_like_outputs() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let job: Value = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, done) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded");
    let rows = |action: &'static str| {
        let id = id.clone();
        let pool = env.pool().clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT actor, host(client_ip) FROM audit_events WHERE action = $1 AND job_id = $2::uuid ORDER BY id",
            )
            .bind(action)
            .bind(&id)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let url = api.url(&format!("/v1/jobs/{id}/poster"));
    let first = api.client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(!first.bytes().await.unwrap().is_empty());
    let written = rows("job.poster_downloaded").await;
    assert_eq!(written.len(), 1, "a poster GET is audited: {written:?}");
    assert_eq!(written[0].1.as_deref(), Some("127.0.0.1"), "{written:?}");
    // Fetched again (a page re-rendering it) and revalidated: still one row.
    assert_eq!(api.client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(api.client.get(&url).header("if-none-match", &etag).send().await.unwrap().status(), 304);
    assert_eq!(rows("job.poster_downloaded").await.len(), 1, "one row per player");
    // The poster does not stand for the MP4: downloading that is its own row.
    assert!(rows("job.downloaded").await.is_empty());
    let output = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(output.status(), 200);
    assert_eq!(rows("job.downloaded").await.len(), 1);
    // Another actor (an admin) is another row.
    let admin = client_with_key(&create_key(&env.database_url, "ops", "admin", "ops"));
    assert_eq!(admin.get(&url).send().await.unwrap().status(), 200);
    let written = rows("job.poster_downloaded").await;
    assert_eq!(written.len(), 2, "{written:?}");
    assert_ne!(written[0].0, written[1].0, "{written:?}");
}
