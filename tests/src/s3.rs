//! A real S3-compatible server for the tests: moto's server (installed by `scripts/test.sh` into
//! `.mediaq/venv`), one per test, on a free loopback port, with one bucket and one IAM user whose
//! access key the services get. Authentication is enforced once set up, so wrong credentials are
//! refused as AWS would refuse them.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

pub const BUCKET: &str = "mediaq-test";
pub const PREFIX: &str = "media/e2e";

/// Creates the bucket and an IAM user allowed s3:*, prints its key, then turns auth on.
const SETUP: &str = r#"
import boto3, json, sys, urllib.request
ep, bucket = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=ep, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
iam = boto3.client("iam", **kw)
iam.create_user(UserName="mediaq")
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
iam.put_user_policy(UserName="mediaq", PolicyName="media", PolicyDocument=json.dumps(policy))
key = iam.create_access_key(UserName="mediaq")["AccessKey"]
req = urllib.request.Request(ep + "/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}, method="POST")
urllib.request.urlopen(req).read()
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

/// Prints every object key, then `uploads: N` (multipart uploads not completed nor aborted).
const LIST: &str = r#"
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2]):
    for o in page.get("Contents", []):
        print(o["Key"])
print("uploads:", len(s3.list_multipart_uploads(Bucket=sys.argv[2]).get("Uploads", [])))
"#;

/// Puts a small object (argv: endpoint, bucket, key).
const PUT: &str = r#"
import boto3, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=b"stray")
"#;

pub struct S3Server {
    child: Child,
    pub log: PathBuf,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    python: PathBuf,
}

/// The venv holding moto: MEDIAQ_TEST_MOTO_VENV, or `.mediaq/venv` in the checkout.
fn venv() -> PathBuf {
    std::env::var_os("MEDIAQ_TEST_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.mediaq/venv"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl S3Server {
    /// Starts moto and sets it up; panics with a clear message when moto is not installed (the
    /// S3 tests must run in CI, never skip).
    pub async fn start(logs: &Path) -> Self {
        let venv = venv();
        let moto = venv.join("bin/moto_server");
        assert!(
            moto.exists(),
            "moto_server not found at {}: run `bash scripts/test.sh` (it installs moto[server] into \
             .mediaq/venv) or set MEDIAQ_TEST_MOTO_VENV",
            moto.display()
        );
        let port = free_port();
        let log = logs.join(format!("moto-{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not listen; log:\n{}",
                crate::services::tail(&log, 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let python = venv.join("bin/python");
        let out = std::process::Command::new(&python).args(["-c", SETUP, &endpoint, BUCKET]).output().unwrap();
        assert!(out.status.success(), "moto setup failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let (access_key, secret_key) = text.trim().split_once(' ').expect("key id and secret");
        Self { child, log, endpoint, access_key: access_key.into(), secret_key: secret_key.into(), python }
    }

    /// The environment that points a service at this server, under [`PREFIX`].
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_with_secret(&self.secret_key)
    }

    pub fn env_with_secret(&self, secret: &str) -> Vec<(String, String)> {
        [
            ("MEDIAQ_STORAGE_URL", format!("s3://{BUCKET}/{PREFIX}")),
            ("MEDIAQ_S3_ENDPOINT", self.endpoint.clone()),
            ("MEDIAQ_S3_ALLOW_HTTP", "true".into()),
            ("MEDIAQ_S3_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", secret.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn python(&self, script: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(&self.python)
            .args(["-c", script, &self.endpoint, BUCKET])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .output()
            .unwrap();
        assert!(out.status.success(), "boto3 against moto failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Puts a small object at `key` (a full key, prefix included).
    pub fn put(&self, key: &str) {
        self.python(PUT, &[key]);
    }

    /// Every key in the bucket, and the number of unfinished multipart uploads.
    pub fn list(&self) -> (Vec<String>, usize) {
        let text = self.python(LIST, &[]);
        let mut keys: Vec<String> = text.lines().map(str::to_owned).collect();
        let uploads = keys.pop().and_then(|l| l.strip_prefix("uploads: ").and_then(|n| n.parse().ok())).unwrap();
        (keys, uploads)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} (last lines) ----\n{}", self.log.display(), crate::services::tail(&self.log, 40));
        }
        let _ = self.child.start_kill();
    }
}

/// `[(String, String)]` as the `&[(&str, &str)]` that `api_with` / `worker_with` take.
pub fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
