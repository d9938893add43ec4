//! Play while converting (issue #27, item 3): a live recording sent through tus at the
//! recorder's pace is converted by the real worker and transcoder with
//! `MEDIAQ_STREAM_SEGMENT_SECONDS` set; while the job is still `processing`, its signed
//! `links.stream` playlist already lists checked segments, ffmpeg started then reads the growing
//! playlist over HTTP until it is closed and gets the whole recording; after the job the playlist
//! ends with `EXT-X-ENDLIST` and ffprobe reads it; deleting the job's files deletes the segments.
//! Oracles: ffmpeg/ffprobe over loopback HTTP, the files in storage.

use std::{process::Stdio, time::Duration};

use mediaq_e2e::{
    error_code, files_under, fixtures,
    fixtures::Recipe,
    live::{slices, TusUpload},
    probe, TestEnv,
};

/// The 12 s MediaRecorder-style recording.
const RECORDING: Recipe = fixtures::RECORDING_12S;
const PARTS: usize = 12;

async fn get_text(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn segments_of(playlist: &str) -> Vec<&str> {
    playlist.lines().filter(|l| l.starts_with("seg-")).collect()
}

#[tokio::test]
async fn a_recording_plays_while_it_converts_and_its_segments_go_with_the_job() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker_with(&[("MEDIAQ_STREAM_SEGMENT_SECONDS", "1"), ("MEDIAQ_X264_KEYINT", "30")]).await;
    let input = fixtures::path(&RECORDING);
    let bytes = std::fs::read(&input).unwrap();
    let parts = slices(&bytes, PARTS);
    let mut upload = TusUpload::create(&api, None).await;
    let id = upload.id.clone();

    // Half the recording, at its pace.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for part in &parts[..PARTS / 2] {
        tick.tick().await;
        upload.append(part).await;
    }
    // Still recording: the stream link plays what is converted so far.
    let mut during = None;
    for _ in 0..20 {
        let job = api.job(&id).await;
        assert_eq!(job["status"], "processing", "{job}");
        let stream = job["links"]["stream"].as_str().expect("a stream link while processing").to_owned();
        assert!(stream.starts_with(&format!("/v1/play/{id}.")) && stream.ends_with("/stream.m3u8"), "{stream}");
        let (status, text) = get_text(&api.url(&stream)).await;
        assert_eq!(status, 200, "{text}");
        if !segments_of(&text).is_empty() {
            during = Some((stream, text));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (stream, text) = during.expect("segments while the recording goes on");
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n") && !text.contains("#EXT-X-ENDLIST"), "{text}");
    assert!(text.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{text}");
    let url = api.url(&stream);
    // Another viewer starts now, from the first segment, and follows the playlist as it grows.
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("watched.mp4");
    let viewer = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-live_start_index", "0", "-i", &url, "-c", "copy", "-y"])
        .arg(&watched)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    for part in &parts[PARTS / 2..] {
        tick.tick().await;
        upload.append(part).await;
    }
    upload.finish().await;
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["links"]["stream"].is_null(), "no stream link once done: {job}");

    // The viewer saw the whole recording, and stopped by itself at the playlist's end.
    let out = tokio::time::timeout(Duration::from_secs(60), viewer.wait_with_output()).await.expect("ffmpeg ends");
    let out = out.unwrap();
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    let seen = probe::ffprobe(&watched);
    assert_eq!(probe::stream(&seen, "video").unwrap()["codec_name"], "h264", "{seen}");
    assert_eq!(probe::stream(&seen, "audio").unwrap()["codec_name"], "aac", "{seen}");
    let (want, got) = (probe::decoded_duration(&input), probe::duration(&seen));
    assert!((want - got).abs() <= 0.5, "watched {got} s of the recording's {want} s");

    // Finished: the same link, closed, readable by ffprobe; a segment of another name is not there.
    let (status, text) = get_text(&url).await;
    assert_eq!(status, 200);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    let segments = segments_of(&text).len();
    assert!(segments >= 10, "about one segment a second: {text}");
    let probed = probe::ffprobe(std::path::Path::new(&url));
    let total = probe::duration(&probed);
    assert!((want - total).abs() <= 0.5, "the playlist lasts {total} s");
    let other = url.replace("stream.m3u8", &format!("seg-{segments}.m4s"));
    let (status, code, _) = error_code(reqwest::get(&other).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    // A link for another file of the same job does not open the stream.
    let tampered = url.replace(&format!("/v1/play/{id}."), &format!("/v1/play/{id}.1"));
    assert_eq!(error_code(reqwest::get(&tampered).await.unwrap()).await.0, 403);

    // Deleting the job's files deletes its segments too.
    let stored = |ext: &str| {
        files_under(&env.storage_dir().join("outputs"))
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(ext))
            .count()
    };
    assert_eq!(stored(".m4s"), segments, "every listed segment is stored");
    assert_eq!(stored(".init.mp4"), 1);
    let resp = api.client.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!((stored(".m4s"), stored(".init.mp4")), (0, 0), "segments deleted with the job");
    let (status, code, _) = error_code(reqwest::get(&url).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (410, "output_gone"));
}
