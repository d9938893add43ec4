//! The S3 backend (any S3-compatible store), over `object_store`'s S3 client. Keys live under
//! the prefix of MEDIAQ_STORAGE_URL.

use std::{ops::Range, path::Path, sync::Arc, time::Duration, time::SystemTime};

use futures_util::{StreamExt, TryStreamExt};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as ObjectPath,
    prefix::PrefixStore,
    signer::Signer,
    ClientOptions, GetOptions, GetRange, ObjectStore, RetryConfig, WriteMultipart,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    writer::{PARTS_IN_FLIGHT, PART_SIZE},
    Fetched, Listed, ObjectWriter, StorageError,
};
use crate::config::S3Config;

/// How long the readiness probe may take.
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// The readiness probe object, written and deleted under the prefix.
const READY_KEY: &str = ".mediaq-ready";

#[derive(Clone)]
pub struct S3 {
    store: Arc<dyn ObjectStore>,
    /// The unprefixed client, for presigned URLs (`Signer` does not pass through `PrefixStore`).
    signer: AmazonS3,
    prefix: ObjectPath,
    url: String,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3").field("url", &self.url).finish()
    }
}

impl S3 {
    /// Builds the client; credentials come from the standard AWS variables (or the instance's
    /// role). Nothing is sent until the first request.
    pub fn open(config: &S3Config) -> Result<Self, StorageError> {
        // Client options first: setting them replaces allow_http.
        let mut builder = AmazonS3Builder::from_env()
            .with_client_options(ClientOptions::new().with_connect_timeout(Duration::from_secs(5)))
            .with_allow_http(config.allow_http)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let s3 = builder.build().map_err(|e| StorageError::Config(format!("cannot set up the S3 client: {e}")))?;
        let signer = s3.clone();
        let store: Arc<dyn ObjectStore> = if config.prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, config.prefix.as_str()))
        };
        let url = format!("s3://{}/{}", config.bucket, config.prefix);
        Ok(Self { store, signer, prefix: ObjectPath::from(config.prefix.as_str()), url })
    }

    /// A presigned GET URL of `key`, valid for `expires_in` (SigV4 query parameters; computed
    /// locally, nothing is sent).
    pub async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, StorageError> {
        let path = ObjectPath::from_iter(self.prefix.parts().chain(ObjectPath::from(key).parts()));
        Ok(self.signer.signed_url(http::Method::GET, &path, expires_in).await?.to_string())
    }

    pub fn describe(&self) -> String {
        self.url.clone()
    }

    pub fn writer(&self, key: &str, seed: sha2::Sha256) -> ObjectWriter {
        ObjectWriter::s3(self.store.clone(), ObjectPath::from(key), seed)
    }

    /// Uploads an open local file from its start, in parts (a multipart upload, aborted on failure).
    pub async fn put_file(&self, from: std::fs::File, key: &str) -> Result<(), StorageError> {
        let path = ObjectPath::from(key);
        let mut file = tokio::fs::File::from_std(from);
        file.seek(std::io::SeekFrom::Start(0)).await?;
        let mut parts = WriteMultipart::new_with_chunk_size(self.store.put_multipart(&path).await?, PART_SIZE);
        let result = async {
            loop {
                let mut buf = vec![0; PART_SIZE];
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]).await? {
                        0 => break,
                        n => filled += n,
                    }
                }
                if filled == 0 {
                    return Ok::<_, StorageError>(());
                }
                buf.truncate(filled);
                parts.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                parts.put(buf.into());
            }
        }
        .await;
        match result {
            Ok(()) => {
                parts.finish().await?;
                Ok(())
            }
            Err(e) => {
                let _ = parts.abort().await;
                Err(e)
            }
        }
    }

    pub async fn fetch_to(&self, key: &str, dest: &Path) -> Result<(), StorageError> {
        let mut body = self.store.get(&ObjectPath::from(key)).await?.into_stream();
        let mut file = tokio::fs::File::from_std(super::create_new_file(dest)?);
        while let Some(chunk) = body.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await?;
        Ok(())
    }

    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched, StorageError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&ObjectPath::from(key), options).await?;
        let (size, modified) = (result.meta.size, SystemTime::from(result.meta.last_modified));
        let body = result.into_stream().map_err(StorageError::from).boxed();
        Ok(Fetched { size, modified, body })
    }

    pub async fn head(&self, key: &str) -> Result<(u64, SystemTime), StorageError> {
        let meta = self.store.head(&ObjectPath::from(key)).await?;
        Ok((meta.size, SystemTime::from(meta.last_modified)))
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => Ok(other?),
        }
    }

    pub async fn list(&self, folder: &str) -> Result<Vec<Listed>, StorageError> {
        let metas: Vec<_> = self.store.list(Some(&ObjectPath::from(folder))).try_collect().await?;
        Ok(metas
            .into_iter()
            .map(|m| Listed { key: m.location.to_string(), modified: SystemTime::from(m.last_modified) })
            .collect())
    }

    /// Keys that start with `prefix`, listed from that point on (not the whole folder).
    pub async fn list_starting_with(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let (folder, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut listed = self.store.list_with_offset(Some(&ObjectPath::from(folder)), &ObjectPath::from(prefix));
        let mut keys = Vec::new();
        while let Some(meta) = listed.next().await {
            let key = meta?.location.to_string();
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// Writes and deletes a small probe object: proves the endpoint answers, the credentials are
    /// accepted and the prefix is writable.
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        let probe = ObjectPath::from(READY_KEY);
        let check = async {
            self.store.put(&probe, "ok".into()).await?;
            self.store.delete(&probe).await?;
            Ok::<_, StorageError>(())
        };
        tokio::time::timeout(READY_TIMEOUT, check).await.map_err(|_| StorageError::Timeout(READY_TIMEOUT))?
    }
}
