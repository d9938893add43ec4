//! Signed playback links (issue #27, item 1), over real HTTP with no credential header: a link
//! opens one file of one job (Range, ETag, If-Range, If-None-Match, `inline`), ffprobe reads it
//! as a player would, every alteration is `link_invalid`, an expired link `link_expired`, a link
//! whose key was revoked `link_revoked` on every API process within seconds, someone else's job
//! gets no link, the viewer is audited once per window, and `mediaq url` prints a working link.
//! Oracles: the job's recorded SHA-256, ffprobe, and the audit rows in PostgreSQL.

use std::time::Duration;

use mediaq_e2e::{
    bin_dir, error_code, fixtures,
    fixtures::Recipe,
    probe,
    services::{client_with_key, create_key},
    sha256_hex, wait_for, Api, TestEnv,
};
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// MEDIAQ_LINK_KEY of the APIs that must accept each other's links.
const LINK_KEY: &str = "8c3e5a0f1b2d4c6e8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5";

/// Uploads `recipe` with `client` and waits until its job succeeded; returns the job.
async fn converted(api: &Api, client: &reqwest::Client, recipe: &Recipe) -> Value {
    let resp = client
        .post(api.url("/v1/jobs"))
        .query(&[("filename", recipe.name)])
        .header("content-type", "video/webm")
        .body(fixtures::bytes(recipe))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    wait_for(JOB_TIMEOUT, "the job to succeed", || {
        let (client, url) = (client.clone(), api.url(&format!("/v1/jobs/{id}")));
        async move {
            let job: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            assert!(!matches!(job["status"].as_str(), Some("failed" | "canceled")), "{job}");
            if job["status"] != "succeeded" {
                assert!(job["links"]["play"].is_null(), "nothing to play before success: {job}");
            }
            (job["status"] == "succeeded").then_some(job)
        }
    })
    .await
}

/// Links of a job for `client` (`GET /v1/jobs/{id}/links`, optionally `?expires_in=`).
async fn links(api: &Api, client: &reqwest::Client, id: &str, expires_in: Option<&str>) -> reqwest::Response {
    let mut request = client.get(api.url(&format!("/v1/jobs/{id}/links")));
    if let Some(secs) = expires_in {
        request = request.query(&[("expires_in", secs)]);
    }
    request.send().await.unwrap()
}

/// The code a link answers without any credential (`200` as "ok").
async fn opens(api: &Api, path: &str) -> String {
    let resp = reqwest::get(api.url(path)).await.unwrap();
    if resp.status() == 200 {
        return "ok".into();
    }
    let (status, code, _) = error_code(resp).await;
    format!("{status} {code}")
}

#[tokio::test]
async fn a_link_plays_one_file_of_one_job_with_range_and_etag_and_refuses_any_change() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_LINK_KEY", LINK_KEY)]).await;
    let _worker = env.worker().await;
    let job = converted(&api, &api.client, &fixtures::VP8_OPUS_2S).await;
    let id = job["id"].as_str().unwrap();
    let sha = job["output"]["sha256"].as_str().unwrap();
    let play = &job["links"]["play"];
    let output = play["output"].as_str().unwrap();
    assert!(output.starts_with(&format!("/v1/play/{id}.")) && output.ends_with("/output.mp4"), "{play}");
    assert!(play["expires_at"].as_str().is_some(), "{play}");
    assert_eq!(api.job(id).await["links"]["play"], *play, "polling sees the same links (and ETag)");

    // The MP4, with no header at all: bytes, type, ETag, inline.
    let anonymous = reqwest::Client::new();
    let url = api.url(output);
    let resp = anonymous.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let etag = format!("\"{sha}\"");
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-disposition"].to_str().unwrap().starts_with("inline; filename=\"browser_clip_2s.mp4\""));
    let full = resp.bytes().await.unwrap();
    assert_eq!(sha256_hex(&full), sha, "the job's own MP4");
    // Range, If-None-Match, If-Range (this ETag keeps the range, another one gets the whole file).
    let resp = anonymous.get(&url).header("range", "bytes=100-1099").send().await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], format!("bytes 100-1099/{}", full.len()).as_str());
    assert_eq!(resp.bytes().await.unwrap(), &full[100..1100]);
    let resp = anonymous.get(&url).header("range", format!("bytes={}-", full.len() + 5)).send().await.unwrap();
    assert_eq!(resp.status(), 416);
    let resp = anonymous.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["etag"].to_str().unwrap()), (304, etag.as_str()));
    let resp = anonymous.get(&url).header("range", "bytes=0-9").header("if-range", &etag).send().await.unwrap();
    assert_eq!(resp.status(), 206);
    let resp = anonymous.get(&url).header("range", "bytes=0-9").header("if-range", "\"other\"").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.bytes().await.unwrap().len()), (200, full.len()));
    // A player that is not a browser reads it too.
    let probed = probe::ffprobe(std::path::Path::new(&url));
    assert_eq!(probe::stream(&probed, "video").unwrap()["codec_name"], "h264");
    // The poster link.
    let poster = play["poster"].as_str().unwrap();
    let resp = anonymous.get(api.url(poster)).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["content-type"].to_str().unwrap()), (200, "image/jpeg"));
    assert!(resp.bytes().await.unwrap().starts_with(&[0xff, 0xd8]), "a JPEG");

    // Every request above came from one viewer within the window: one audit row.
    let key_id = &env.api_key[3..19];
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE job_id = $1::uuid AND action = 'job.downloaded'")
            .bind(id)
            .fetch_all(env.pool())
            .await
            .unwrap();
    assert_eq!(actors, [format!("link:{key_id}@127.0.0.1")]);

    // Any change to a link breaks it; another key's job is out of reach.
    let other_key = create_key(&env.database_url, "other", "jobs:write,jobs:read", "someone-else");
    let other = client_with_key(&other_key);
    let theirs = converted(&api, &other, &fixtures::VP8_VORBIS).await;
    let their_id = theirs["id"].as_str().unwrap();
    let (_, code, _) = error_code(links(&api, &other, id, None).await).await;
    assert_eq!(code, "job_not_found", "no links to someone else's job");
    let token = output.strip_prefix("/v1/play/").unwrap().strip_suffix("/output.mp4").unwrap();
    let p: Vec<&str> = token.split('.').collect();
    let flipped = format!("{}{}", &p[3][..p[3].len() - 1], if p[3].ends_with('A') { 'B' } else { 'A' });
    let later = (p[1].parse::<i64>().unwrap() + 3600).to_string();
    let their_key = &other_key[3..19];
    for (what, path) in [
        ("signature", format!("/v1/play/{}.{}.{}.{flipped}/output.mp4", p[0], p[1], p[2])),
        ("expiry", format!("/v1/play/{}.{later}.{}.{}/output.mp4", p[0], p[2], p[3])),
        ("job", format!("/v1/play/{their_id}.{}.{}.{}/output.mp4", p[1], p[2], p[3])),
        ("key", format!("/v1/play/{}.{}.{their_key}.{}/output.mp4", p[0], p[1], p[3])),
        ("file", format!("/v1/play/{token}/poster.jpg")),
        ("garbage", "/v1/play/abc/output.mp4".to_owned()),
    ] {
        assert_eq!(opens(&api, &path).await, "403 link_invalid", "{what}: {path}");
    }
    assert_eq!(opens(&api, &format!("/v1/play/{token}/other.bin")).await, "404 not_found");
    assert_eq!(opens(&api, output).await, "ok", "the original still opens");
    let their_output = theirs["links"]["play"]["output"].as_str().unwrap().to_owned();
    let resp = anonymous.get(api.url(&their_output)).send().await.unwrap();
    assert_eq!(sha256_hex(&resp.bytes().await.unwrap()), theirs["output"]["sha256"].as_str().unwrap());

    // Lifetimes: 1 s to MEDIAQ_LINK_MAX_TTL (24 h); a short one expires.
    for bad in ["0", "86401", "x"] {
        assert_eq!(links(&api, &api.client, id, Some(bad)).await.status(), 400, "expires_in={bad}");
    }
    let short: Value = links(&api, &api.client, id, Some("2")).await.json().await.unwrap();
    let short = short["output"].as_str().unwrap().to_owned();
    assert_eq!(opens(&api, &short).await, "ok");
    wait_for(Duration::from_secs(6), "the 2 s link to expire", || {
        let (api, short) = (&api, &short);
        async move { (opens(api, short).await == "403 link_expired").then_some(()) }
    })
    .await;

    // The command-line client prints a link that works without a credential.
    let out = tokio::process::Command::new(bin_dir().join("mediaq"))
        .args(["url", id, "--expires-in", "600"])
        .env("MEDIAQ_URL", &api.base_url)
        .env("MEDIAQ_API_KEY", &env.api_key)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(printed.starts_with(&format!("{}/v1/play/{id}.", api.base_url)), "{printed}");
    let resp = anonymous.get(&printed).send().await.unwrap();
    assert_eq!(sha256_hex(&resp.bytes().await.unwrap()), sha);
}

#[tokio::test]
async fn links_die_with_their_key_on_every_api_process_and_open_only_where_the_link_key_is_shared() {
    let env = TestEnv::new().await;
    let shared = [("MEDIAQ_LINK_KEY", LINK_KEY)];
    let (one, two) = (env.api_with(&shared).await, env.api_with(&shared).await);
    let (alone, other_alone) = (env.api().await, env.api().await);
    let new_key = LINK_KEY.replace('8', "9");
    let rotated = env.api_with(&[("MEDIAQ_LINK_KEY", &new_key), ("MEDIAQ_LINK_KEY_PREVIOUS", LINK_KEY)]).await;
    let _worker = env.worker().await;
    let id = converted(&one, &one.client, &fixtures::VP8_OPUS_2S).await["id"].as_str().unwrap().to_owned();
    let viewer_key = create_key(&env.database_url, "viewer", "jobs:read", "tester");
    let viewer = client_with_key(&viewer_key);
    let link = |body: Value| body["output"].as_str().unwrap().to_owned();
    let shared_link = link(links(&one, &viewer, &id, None).await.json().await.unwrap());
    let own_link = link(links(&one, &one.client, &id, None).await.json().await.unwrap());
    for api in [&one, &two, &rotated] {
        assert_eq!(opens(api, &shared_link).await, "ok", "MEDIAQ_LINK_KEY shared: opens on {}", api.base_url);
    }
    // After a rotation the old key still opens its links; the new key's links need the new key.
    let new_link = link(links(&rotated, &viewer, &id, None).await.json().await.unwrap());
    assert_eq!(opens(&rotated, &new_link).await, "ok");
    assert_eq!(opens(&one, &new_link).await, "403 link_invalid");
    // Without MEDIAQ_LINK_KEY each process signs with its own random key.
    let lone_link = link(links(&alone, &viewer, &id, None).await.json().await.unwrap());
    assert_eq!(opens(&alone, &lone_link).await, "ok");
    assert_eq!(opens(&other_alone, &lone_link).await, "403 link_invalid");
    assert_eq!(opens(&one, &lone_link).await, "403 link_invalid");
    assert!(alone.service.log_text().contains("MEDIAQ_LINK_KEY is not set"), "the process says so");

    // Revoked with the real CLI: both processes refuse the key's links within seconds (their key
    // caches hold the key from the requests above; the NOTIFY drops it).
    let out = std::process::Command::new(bin_dir().join("mediaq-api"))
        .args(["keys", "revoke", &viewer_key[3..19]])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for api in [&one, &two] {
        wait_for(Duration::from_secs(3), "the revoked key's link to be refused", || async {
            (opens(api, &shared_link).await == "403 link_revoked").then_some(())
        })
        .await;
        assert!(api.service.log_text().contains("revoked key dropped from the cache"));
    }
    assert_eq!(opens(&alone, &lone_link).await, "403 link_revoked");
    assert_eq!(opens(&two, &own_link).await, "ok", "other keys' links still open");
}

#[tokio::test]
async fn with_s3_a_link_redirects_to_a_presigned_object_url_or_streams_through_the_api() {
    use mediaq_e2e::s3::{pairs, S3Server};
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let mut redirecting = s3.env();
    redirecting.extend([("MEDIAQ_LINK_KEY".to_owned(), LINK_KEY.to_owned())]);
    let proxying = redirecting.clone();
    redirecting.push(("MEDIAQ_LINK_S3_REDIRECT".into(), "true".into()));
    let api = env.api_with(&pairs(&redirecting)).await;
    let through = env.api_with(&pairs(&proxying)).await;
    let _worker = env.worker_with(&pairs(&s3.env())).await;
    let job = converted(&api, &api.client, &fixtures::VP8_OPUS_2S).await;
    let sha = job["output"]["sha256"].as_str().unwrap();
    let output = job["links"]["play"]["output"].as_str().unwrap();

    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirects.get(api.url(output)).send().await.unwrap();
    assert_eq!(resp.status(), 307);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let endpoint = &s3.env().into_iter().find(|(k, _)| k == "MEDIAQ_S3_ENDPOINT").unwrap().1;
    assert!(location.starts_with(endpoint.as_str()) && location.contains("X-Amz-Signature="), "{location}");
    let expires: u64 = location.split("X-Amz-Expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    assert!((590..=600).contains(&expires), "a presigned URL lives at most 10 minutes: {location}");
    // The presigned URL reads the object (whole and by range) with no credential of ours. moto's
    // IAM check reads only the Authorization header (a query-string signature makes it fail with
    // a 500), so its checks are paused for these reads: the signature itself is object_store's
    // SigV4, and this test proves where it points and what it reads.
    let resp = no_redirects
        .post(format!("{endpoint}/moto-api/reset-auth"))
        .header("content-type", "text/plain")
        .body("2")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let resp = no_redirects.get(&location).send().await.unwrap();
    let status = resp.status();
    let full = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{location}: {}", String::from_utf8_lossy(&full));
    assert_eq!(sha256_hex(&full), sha);
    let resp = no_redirects.get(&location).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.bytes().await.unwrap()), (206, full.slice(10..20)));
    // Without MEDIAQ_LINK_S3_REDIRECT the same link streams through the API, with Range.
    let resp = no_redirects.get(through.url(output)).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.bytes().await.unwrap()), (206, full.slice(10..20)));
    // The redirect is audited like a download.
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE job_id = $1::uuid AND action = 'job.downloaded'")
            .bind(job["id"].as_str().unwrap())
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(rows, 1);
}
