//! Worker and transcoder, end to end: real API, real worker processes, real libav children;
//! every output checked by ffprobe.

use std::{path::Path, time::Duration};

use mediaq_e2e::{
    fixtures::{self, Recipe},
    probe, sha256_hex, Api, TestEnv,
};
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

async fn upload(api: &Api, recipe: &Recipe) -> String {
    let resp = api.upload(fixtures::bytes(recipe), "video/webm", Some(recipe.name)).await;
    assert_eq!(resp.status(), 202, "{}", recipe.name);
    let job: Value = resp.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

async fn download(api: &Api, id: &str, dir: &Path) -> (std::path::PathBuf, reqwest::header::HeaderMap) {
    let resp = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let path = dir.join(format!("{id}.mp4"));
    std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();
    (path, headers)
}

/// Checks an MP4 with ffprobe against its input: codecs, pixel format, even size, duration, faststart.
fn check_output(input: &Path, output: &Path, job: &Value) {
    let name = input.file_name().unwrap().to_string_lossy();
    let inp = probe::ffprobe(input);
    let out = probe::ffprobe(output);
    assert!(out["format"]["format_name"].as_str().unwrap().contains("mp4"), "{name}: {out}");
    let in_video = probe::stream(&inp, "video");
    let in_audio = probe::stream(&inp, "audio");
    match (in_video, probe::stream(&out, "video")) {
        (Some(_), Some(v)) => {
            assert_eq!(v["codec_name"], "h264", "{name}");
            assert_eq!(v["pix_fmt"], "yuv420p", "{name}");
            let (w, h) = (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap());
            assert!(w % 2 == 0 && h % 2 == 0, "{name}: {w}x{h} must be even");
            assert_eq!(job["output"]["width"], w, "{name}: job facts match ffprobe");
            assert_eq!(job["output"]["height"], h, "{name}");
            assert_eq!(job["output"]["video_codec"], "h264");
        }
        (None, None) => assert!(job["output"]["video_codec"].is_null()),
        (i, o) => panic!("{name}: video stream in/out mismatch: {i:?} / {o:?}"),
    }
    match (in_audio, probe::stream(&out, "audio")) {
        (Some(_), Some(a)) => {
            assert_eq!(a["codec_name"], "aac", "{name}");
            assert_eq!(a["profile"], "LC", "{name}");
            assert_eq!(a["sample_rate"], "48000", "{name}");
            assert_eq!(a["channels"], 2, "{name}");
        }
        (None, None) => {}
        (i, o) => panic!("{name}: audio stream in/out mismatch: {i:?} / {o:?}"),
    }
    let in_duration = match probe::duration(&inp) {
        d if d.is_finite() => d,
        _ => probe::decoded_duration(input),
    };
    let out_duration = probe::duration(&out);
    assert!((in_duration - out_duration).abs() <= 0.1, "{name}: duration in {in_duration} out {out_duration}");
    let boxes = probe::top_level_boxes(&std::fs::read(output).unwrap());
    let moov = boxes.iter().position(|b| b == "moov").expect("moov");
    let mdat = boxes.iter().position(|b| b == "mdat").expect("mdat");
    assert!(moov < mdat, "{name}: faststart: moov must precede mdat: {boxes:?}");
}

fn assert_progress_rises_to_one(id: &str, seen: &[f64]) {
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{id}: progress must not go back: {seen:?}");
    assert_eq!(seen.last(), Some(&1.0), "{id}: progress ends at 1: {seen:?}");
    assert!(seen.iter().all(|p| (0.0..=1.0).contains(p)), "{seen:?}");
}

#[tokio::test]
async fn every_kind_of_webm_converts_to_a_valid_mp4() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let out_dir = tempfile::tempdir().unwrap();
    let recipes = [
        &fixtures::VP8_VORBIS,
        &fixtures::VP9_OPUS,
        &fixtures::AV1_OPUS,
        &fixtures::ODD_NO_AUDIO,
        &fixtures::AUDIO_ONLY,
        &fixtures::LIVE_VFR,
        &fixtures::RES_CHANGE,
        &fixtures::OPUS_51,
    ];
    for recipe in recipes {
        let id = upload(&api, recipe).await;
        let (seen, job) = api.wait_terminal(&id, JOB_TIMEOUT).await;
        assert_eq!(job["status"], "succeeded", "{}: {job}", recipe.name);
        assert_eq!(job["attempts"], 1);
        assert!(job["error"].is_null());
        assert_progress_rises_to_one(&id, &seen);
        let (path, headers) = download(&api, &id, out_dir.path()).await;
        assert_eq!(headers["content-type"], "video/mp4");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let stem = recipe.name.trim_end_matches(".webm");
        assert_eq!(
            headers["content-disposition"].to_str().unwrap(),
            format!("attachment; filename=\"{stem}.mp4\"; filename*=UTF-8''{stem}.mp4")
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(job["output"]["size_bytes"], bytes.len());
        assert_eq!(job["output"]["sha256"], sha256_hex(&bytes));
        check_output(&fixtures::path(recipe), &path, &job);
        // Temp files are gone.
        assert!(mediaq_e2e::files_under(&env.storage_dir().join("work")).is_empty());
    }
    let started: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'job.started'")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert!(started >= recipes.len() as i64);
}

#[tokio::test]
async fn range_requests_return_the_exact_bytes() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let id = upload(&api, &fixtures::VP9_OPUS).await;
    let (_, job) = api.wait_terminal(&id, JOB_TIMEOUT).await;
    assert_eq!(job["status"], "succeeded");
    let url = api.url(&format!("/v1/jobs/{id}/output"));
    let full = api.client.get(&url).send().await.unwrap().bytes().await.unwrap();
    api.check_ranges(&url, &full).await;
}

#[tokio::test]
async fn two_workers_share_twenty_jobs_and_do_each_once() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _w1 = env.worker().await;
    let _w2 = env.worker().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(upload(&api, &fixtures::VP8_VORBIS).await);
    }
    for id in &ids {
        let (_, job) = api.wait_terminal(id, JOB_TIMEOUT).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
    }
    let per_job: Vec<(i64,)> =
        sqlx::query_as("SELECT count(*) FROM audit_events WHERE action = 'job.started' GROUP BY job_id")
            .fetch_all(env.pool())
            .await
            .unwrap();
    assert_eq!(per_job.len(), 20);
    assert!(per_job.iter().all(|(n,)| *n == 1), "each job started once: {per_job:?}");
    let workers: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT actor) FROM audit_events WHERE action = 'job.started'")
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(workers, 2, "both workers took jobs");
    let outputs = mediaq_e2e::mp4s_under(&env.storage_dir().join("outputs"));
    assert_eq!(outputs.len(), 20, "one output per job");
}

#[tokio::test]
async fn corpus_files_end_as_the_manifest_expects() {
    let entries = mediaq_e2e::corpus();
    if entries.is_empty() {
        return;
    }
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let out_dir = tempfile::tempdir().unwrap();
    let mut accepted = Vec::new();
    for entry in &entries {
        let resp = api.upload(std::fs::read(&entry.path).unwrap(), "video/webm", None).await;
        if resp.status() == 202 {
            let job: Value = resp.json().await.unwrap();
            accepted.push((entry, job["id"].as_str().unwrap().to_owned()));
        }
    }
    for (entry, id) in accepted {
        let (_, job) = api.wait_terminal(&id, JOB_TIMEOUT).await;
        let expected = entry.expected.as_str();
        // MP4 joined the accepted containers (issue 31): the corpus's "not WebM" MP4 converts.
        let mp4 = entry.filename.ends_with(".mp4") && expected == "REJECT (not WebM)";
        let expected = if mp4 { "ACCEPT" } else { expected };
        let status = job["status"].as_str().unwrap();
        if expected.starts_with("ACCEPT (") && !expected.contains("FAIL") || expected == "ACCEPT" {
            assert_eq!(status, "succeeded", "{}: {expected}: {job}", entry.filename);
            let (path, _) = download(&api, &id, out_dir.path()).await;
            let out = probe::ffprobe(&path);
            assert!(probe::stream(&out, "video").or(probe::stream(&out, "audio")).is_some(), "{}", entry.filename);
        } else if expected.starts_with("REJECT") {
            assert_eq!(status, "failed", "{}: {expected}: {job}", entry.filename);
        } else {
            assert!(matches!(status, "succeeded" | "failed"), "{}: {job}", entry.filename);
        }
        if status == "failed" {
            let code = job["error"]["code"].as_str().unwrap();
            assert!(
                // Matroska files (accepted at upload since #19) may break a limit: test5 has 11 streams.
                matches!(code, "invalid_media" | "unsupported_codec" | "damaged_input" | "transcode_error")
                    || code.ends_with("_exceeded"),
                "{}: a clear code, got {code}: {job}",
                entry.filename
            );
        }
    }
    // The worker is still alive and working.
    let id = upload(&api, &fixtures::VP8_VORBIS).await;
    let (_, job) = api.wait_terminal(&id, JOB_TIMEOUT).await;
    assert_eq!(job["status"], "succeeded");
}
