//! TEST SCAFFOLDING: the API side of a resumable (tus) upload, simulated by writing its rows and
//! segment objects directly through `mediaq_shared`, exactly as the contract on main says the
//! tus route does (job `receiving` with `input_key` = the segment prefix, one stored object per
//! acknowledged PATCH, the queue task enqueued with the first segment, completion with the
//! SHA-256). The worker under test cannot tell it from the real route. Once `/v1/uploads` is
//! in, tests can drive it over HTTP instead.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use mediaq_shared::{
    config::{CommonConfig, Redacted, S3Location},
    db::{jobs, uploads, uploads::Segment},
    queue::{self, TranscodeTask},
    storage::Storage,
    InputFacts, JobId, OriginalFilename,
};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::TestEnv;

/// How long an upload stays alive after its last PATCH (the real route's default may differ).
const EXPIRY: Duration = Duration::from_secs(3600);

/// One simulated upload: create it, append segments, finish it.
pub struct SimulatedUpload {
    pub id: JobId,
    pool: PgPool,
    storage: Storage,
    received: u64,
    length: Option<u64>,
    hash: Sha256,
}

/// The test's storage (local, under the test's storage root), as the API would open it.
pub fn storage(env: &TestEnv) -> Storage {
    open_storage(env, None)
}

/// The test's S3 server as the API would open it. Sets the AWS credential variables in this
/// process (nothing else reads them here: services get their own environment).
pub fn s3_storage(env: &TestEnv, s3: &crate::s3::S3Server) -> Storage {
    std::env::set_var("AWS_ACCESS_KEY_ID", &s3.access_key);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &s3.secret_key);
    open_storage(env, Some((crate::s3::BUCKET.into(), crate::s3::PREFIX.into(), s3.endpoint.clone())))
}

/// `store`: local disk, or an S3 bucket, prefix and endpoint.
fn open_storage(env: &TestEnv, store: Option<(String, String, String)>) -> Storage {
    let config = CommonConfig {
        database_url: Redacted(env.database_url.clone()),
        storage_dir: env.storage_dir().to_owned(),
        storage_url: store
            .as_ref()
            .map(|(bucket, prefix, _)| S3Location { bucket: bucket.clone(), prefix: prefix.clone() }),
        s3_endpoint: store.as_ref().map(|(_, _, endpoint)| endpoint.clone()),
        s3_region: "us-east-1".into(),
        s3_allow_http: true,
        work_dir_setting: Some(env.storage_dir().join("work")),
        db_max_connections: 4,
        db_timeout: Duration::from_secs(3),
        metrics_token: None,
    };
    Storage::open(&config).expect("open the test's storage")
}

impl SimulatedUpload {
    /// `POST /v1/uploads` (creation, length given or deferred): the job exists, `receiving`,
    /// owned by the test's key owner; segments go to the test's local storage.
    pub async fn create(env: &TestEnv, length: Option<u64>) -> Self {
        Self::create_in(env, length, storage(env)).await
    }

    /// [`Self::create`] with segments stored in `storage`.
    pub async fn create_in(env: &TestEnv, length: Option<u64>, storage: Storage) -> Self {
        let id = JobId::generate();
        let input = InputFacts {
            filename: OriginalFilename::sanitize("recording.webm"),
            size: 0,
            sha256: None,
            content_type: "video/webm".into(),
            key: Storage::segment_prefix(id),
        };
        let mut tx = env.pool().begin().await.unwrap();
        jobs::insert(&mut *tx, id, &input, "tester", None, None).await.unwrap();
        // (The real route inserts the job as `receiving`; jobs::insert only knows `queued`.)
        sqlx::query("UPDATE jobs SET status = 'receiving' WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await
            .unwrap();
        uploads::create(&mut tx, id, length, Utc::now() + EXPIRY, None).await.unwrap();
        tx.commit().await.unwrap();
        Self { id, pool: env.pool().clone(), storage, received: 0, length, hash: Sha256::new() }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// One acknowledged PATCH: the bytes stored as a segment, then appended (and, the first
    /// time, the queue task enqueued) in one transaction.
    pub async fn append(&mut self, bytes: &[u8]) {
        let key = Storage::segment_key(self.id, self.received);
        let mut writer = self.storage.writer(&key).await.unwrap();
        writer.write(Bytes::copy_from_slice(bytes)).await.unwrap();
        let written = writer.finish().await.unwrap();
        self.storage.commit(written.object).await.unwrap();
        let segment = Segment { start: self.received, size: bytes.len() as u64, key };
        let mut tx = self.pool.begin().await.unwrap();
        assert!(uploads::append(&mut tx, self.id, &segment, Utc::now() + EXPIRY).await.unwrap(), "appended");
        if self.received == 0 {
            queue::enqueue(&mut tx, TranscodeTask { job_id: self.id }, None).await.unwrap();
        }
        tx.commit().await.unwrap();
        self.received += bytes.len() as u64;
        self.hash.update(bytes);
    }

    /// The last PATCH's aftermath: a deferred length set to what was received, then completion.
    pub async fn finish(&mut self) {
        let mut tx = self.pool.begin().await.unwrap();
        if self.length.is_none() {
            assert!(uploads::set_length(&mut tx, self.id, self.received).await.unwrap());
        }
        let sha256 = hex::encode(self.hash.clone().finalize());
        assert!(uploads::complete(&mut tx, self.id, &sha256).await.unwrap(), "completed");
        tx.commit().await.unwrap();
    }

    /// Moves the upload's expiry into the past (as if the client had been gone that long).
    pub async fn expire_now(&self) {
        sqlx::query("UPDATE uploads SET expires_at = now() - interval '1 second' WHERE job_id = $1")
            .bind(self.id.as_uuid())
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

/// `bytes` cut into `count` nearly equal segments (a recorder's timeslices, about as many
/// seconds of media each as the file lasts divided by `count`).
pub fn slices(bytes: &[u8], count: usize) -> Vec<&[u8]> {
    let size = bytes.len().div_ceil(count.max(1));
    bytes.chunks(size.max(1)).collect()
}
