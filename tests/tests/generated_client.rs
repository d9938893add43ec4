//! A client generated from the committed OpenAPI document (openapi-python-client, from PyPI,
//! installed by scripts/test.sh) runs one upload, poll and download against the real API and
//! worker; ffprobe checks the MP4, and a refused upload parses into the documented error body.

use std::{path::PathBuf, process::Command};

use mediaq_e2e::{fixtures, TestEnv};

fn venv_bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.mediaq/venv/bin").join(name)
}

#[tokio::test]
async fn a_generated_python_client_uploads_polls_and_downloads() {
    let generator = venv_bin("openapi-python-client");
    assert!(generator.exists(), "{} missing: run scripts/test.sh (ensure_api_tools)", generator.display());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&generator)
        .args(["generate", "--meta", "none", "--path"])
        .arg(root.join("docs/openapi.json"))
        .arg("--output-path")
        .arg(dir.path().join("mediaq_client"))
        .arg("--config")
        .arg(root.join("tests/client/generate.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "generation failed: {}", String::from_utf8_lossy(&out.stderr));

    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let input = dir.path().join("clip.webm");
    std::fs::write(&input, fixtures::bytes(&fixtures::VP8_VORBIS)).unwrap();
    let output = dir.path().join("clip.mp4");
    let run = Command::new(venv_bin("python"))
        .arg(root.join("tests/client/roundtrip.py"))
        .arg(dir.path())
        .arg(&api.base_url)
        .arg(&api.key)
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["refused_status"], 415, "{result}");
    assert_eq!(result["refused_code"], "not_webm", "{result}");
    // The independent oracle: the downloaded file is an H.264 + AAC MP4.
    let probe = mediaq_e2e::probe::ffprobe(&output);
    assert_eq!(mediaq_e2e::probe::stream(&probe, "video").unwrap()["codec_name"], "h264", "{probe}");
    assert_eq!(mediaq_e2e::probe::stream(&probe, "audio").unwrap()["codec_name"], "aac", "{probe}");
    assert_eq!(api.job(result["id"].as_str().unwrap()).await["status"], "succeeded");
}
