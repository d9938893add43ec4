//! The stream's segments as the child finishes them (playback while the job converts): each
//! `segment` event is checked like the MP4 ([`crate::output::file`]: opened without following
//! links, a plain file of the child's uid with one link, within the size limit, through one
//! descriptor) and shaped like what it claims to be (`init.mp4`: `ftyp` then `moov`; a segment:
//! `styp`/`sidx`/`moof` then `mdat`, box sizes adding up to the file), then stored beside the
//! attempt's MP4 ([`Storage::stream_key`], deleted with it) and recorded in `job_segments`.
//!
//! Segments must come in order from 0 with the size the child announced; the first one that does
//! not, or fails a check, ends the stream for the attempt (the MP4 is unaffected: the stream is
//! a preview, the MP4 the result). The initialization section is stored before segment 0.

use std::{
    io::{self, Read, Seek, SeekFrom},
    path::PathBuf,
    sync::Arc,
};

use futures_util::{future::BoxFuture, FutureExt};
use mediaq_shared::{
    db::segments::{self, Segment},
    storage::Storage,
    JobId,
};
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::{child::Tick, output::file};

/// The stream's initialization section in the job directory (the child's `init.mp4`).
pub const INIT_FILE: &str = "init.mp4";

/// Where an attempt's segments go.
pub struct SegmentStore {
    pool: PgPool,
    storage: Storage,
    id: JobId,
    attempt: i32,
    dir: PathBuf,
    child_uid: u32,
    max_bytes: u64,
    /// The index the next segment must have; None once the stream ended (a refusal).
    next: Option<u32>,
}

impl SegmentStore {
    pub fn new(
        pool: PgPool,
        storage: Storage,
        id: JobId,
        attempt: i32,
        dir: PathBuf,
        child_uid: u32,
        max_bytes: u64,
    ) -> Self {
        Self { pool, storage, id, attempt, dir, child_uid, max_bytes, next: Some(0) }
    }

    /// Checks, stores and records one segment; a refusal ends the attempt's stream.
    pub async fn store(&mut self, index: u32, duration_s: f64, bytes: u64) {
        if self.next != Some(index) {
            if self.next.is_some() {
                tracing::warn!(index, expected = ?self.next, "a stream segment out of order; the stream ends here");
                self.next = None;
            }
            return;
        }
        match self.try_store(index, duration_s, bytes).await {
            Ok(()) => self.next = Some(index + 1),
            Err(why) => {
                tracing::warn!(index, %why, "a stream segment was refused; the stream ends here");
                self.next = None;
            }
        }
    }

    async fn try_store(&self, index: u32, duration_s: f64, bytes: u64) -> Result<(), String> {
        if !(duration_s.is_finite() && (0.0..=3600.0).contains(&duration_s)) {
            return Err(format!("an implausible duration ({duration_s} s)"));
        }
        if index == 0 {
            self.check_and_put(INIT_FILE, Shape::Init, None).await?;
        }
        let name = segment_file(index);
        self.check_and_put(&name, Shape::Segment, Some(bytes)).await?;
        let segment = Segment { seq: index as i32, duration_s, bytes: bytes as i64 };
        segments::record(&self.pool, self.id, self.attempt, &segment).await.map_err(|e| e.to_string())
    }

    async fn check_and_put(&self, name: &str, shape: Shape, announced: Option<u64>) -> Result<(), String> {
        let (path, uid, max) = (self.dir.join(name), self.child_uid, self.max_bytes);
        let checked = tokio::task::spawn_blocking(move || {
            let mut verified = file::open_plain(&path, uid, max).map_err(|e| e.to_string())?;
            if announced.is_some_and(|n| n != verified.size) {
                return Err(format!("{} bytes, not the {} announced", verified.size, announced.unwrap_or(0)));
            }
            check_boxes(&mut verified.file, verified.size, shape).map_err(|e| e.to_string())?;
            verified.file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            Ok::<_, String>(verified.file)
        })
        .await
        .map_err(|e| e.to_string())??;
        let key = Storage::stream_key(self.id, self.attempt, name);
        self.storage.put_file(checked, &key).await.map_err(|e| e.to_string())
    }
}

/// The file name of segment `index` in the job directory and in storage.
pub fn segment_file(index: u32) -> String {
    format!("seg-{index}.m4s")
}

/// A callback for [`crate::child::run`]: progress goes to `progress`, segments to `store`.
pub fn with_segments(
    mut progress: impl FnMut(f64) -> BoxFuture<'static, ()>,
    store: Option<SegmentStore>,
) -> impl FnMut(Tick) -> BoxFuture<'static, ()> {
    let store = store.map(|s| Arc::new(Mutex::new(s)));
    move |tick| match (tick, &store) {
        (Tick::Progress(p), _) => progress(p),
        (Tick::Segment { index, duration_s, bytes }, Some(store)) => {
            let store = store.clone();
            async move { store.lock().await.store(index, duration_s, bytes).await }.boxed()
        }
        (Tick::Segment { .. }, None) => futures_util::future::ready(()).boxed(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `ftyp`, then `moov`.
    Init,
    /// `styp`/`sidx`/`moof` boxes, then `mdat` (last).
    Segment,
}

/// Walks the top-level boxes: the sequence `shape` expects, sizes that end at the end.
fn check_boxes(file: &mut std::fs::File, size: u64, shape: Shape) -> io::Result<()> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut pos = 0u64;
    let mut seen: Vec<[u8; 4]> = Vec::new();
    while pos < size {
        if seen.len() >= 64 {
            return Err(bad("too many boxes".into()));
        }
        let mut head = [0u8; 8];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut head)?;
        let length = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        if length < 8 || pos + length > size {
            return Err(bad(format!("a box of {length} bytes at {pos} does not fit")));
        }
        seen.push([head[4], head[5], head[6], head[7]]);
        pos += length;
    }
    let ok = match shape {
        Shape::Init => seen.len() == 2 && &seen[0] == b"ftyp" && &seen[1] == b"moov",
        Shape::Segment => {
            seen.iter().filter(|b| *b == b"moof").count() >= 1
                && seen.last() == Some(b"mdat")
                && seen.iter().all(|b| [b"styp", b"sidx", b"moof", b"mdat"].contains(&b))
        }
    };
    if !ok {
        let names: Vec<String> = seen.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        return Err(bad(format!("unexpected boxes: {}", names.join(" "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn boxes(names: &[&[u8; 4]]) -> std::fs::File {
        let mut file = tempfile::tempfile().unwrap();
        for name in names {
            file.write_all(&16u32.to_be_bytes()).unwrap();
            file.write_all(*name).unwrap();
            file.write_all(&[0; 8]).unwrap();
        }
        file
    }

    fn check(names: &[&[u8; 4]], shape: Shape) -> bool {
        check_boxes(&mut boxes(names), 16 * names.len() as u64, shape).is_ok()
    }

    #[test]
    fn segments_and_init_sections_have_their_shapes() {
        assert!(check(&[b"ftyp", b"moov"], Shape::Init));
        assert!(check(&[b"styp", b"sidx", b"sidx", b"moof", b"mdat"], Shape::Segment));
        assert!(check(&[b"moof", b"mdat"], Shape::Segment));
        assert!(!check(&[b"ftyp", b"moov"], Shape::Segment), "an init section is no segment");
        assert!(!check(&[b"moof", b"mdat", b"moov"], Shape::Segment), "mdat last");
        assert!(!check(&[b"mdat"], Shape::Segment), "no moof");
        assert!(!check(&[b"ftyp", b"moov", b"mdat"], Shape::Init));
        // Sizes must add up to the file.
        let mut file = boxes(&[b"moof", b"mdat"]);
        assert!(check_boxes(&mut file, 40, Shape::Segment).is_err(), "a box running past the end");
        assert!(check_boxes(&mut file, 24, Shape::Segment).is_err(), "a truncated box");
    }

    #[test]
    fn segment_file_names() {
        assert_eq!(segment_file(0), "seg-0.m4s");
        assert_eq!(segment_file(17), "seg-17.m4s");
    }
}
