//! Progress events: 0.0 first, non-decreasing, at most four a second, 1.0 at the end.
//!
//! The fraction comes from the demuxed timestamp over the duration in the header, or, for
//! recordings without a duration (MediaRecorder output), from bytes read over the file size.
//! Reading standard input (an upload still arriving), the total is unknown here: the child
//! reports `read` events (bytes read so far) and the worker, which knows the upload, turns them
//! into a fraction.

use std::io;
use std::time::{Duration, Instant};

use crate::protocol::Event;

/// Receives the child's events (the binary writes them to stdout as JSON lines).
pub type EventSink<'a> = dyn FnMut(Event) -> io::Result<()> + 'a;

const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Highest fraction reported before the output is complete.
const MAX_BEFORE_DONE: f64 = 0.99;

pub struct Progress {
    duration_s: Option<f64>,
    file_size: Option<i64>,
    last_value: f64,
    last_emit: Option<Instant>,
    /// Standard input: report bytes read, not a fraction.
    stream: bool,
    last_bytes: i64,
}

impl Progress {
    /// `duration_s` from the header if known and positive; `file_size` of the input.
    pub fn new(duration_s: Option<f64>, file_size: Option<i64>) -> Self {
        Self {
            duration_s: duration_s.filter(|d| *d > 0.0),
            file_size: file_size.filter(|s| *s > 0),
            last_value: 0.0,
            last_emit: None,
            stream: false,
            last_bytes: 0,
        }
    }

    /// For standard input: `read` events with the bytes read so far.
    pub fn stream() -> Self {
        Self { stream: true, ..Self::new(None, None) }
    }

    /// Emits the first event, 0.0.
    pub fn start(&mut self, sink: &mut EventSink) -> io::Result<()> {
        self.last_emit = Some(Instant::now());
        sink(Event::Progress { progress: 0.0 })
    }

    /// Reports the demuxer's position: the latest timestamp read (seconds from the start) and
    /// the bytes read so far. Emits an event when due.
    pub fn update(&mut self, sink: &mut EventSink, position_s: Option<f64>, bytes_read: Option<i64>) -> io::Result<()> {
        if self.last_emit.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return Ok(());
        }
        if self.stream {
            let Some(bytes) = bytes_read.filter(|b| *b > self.last_bytes) else {
                return Ok(());
            };
            self.last_bytes = bytes;
            self.last_emit = Some(Instant::now());
            return sink(Event::Read { bytes: bytes as u64 });
        }
        let fraction = match (self.duration_s, self.file_size) {
            (Some(duration), _) => position_s.map(|p| p / duration),
            (None, Some(size)) => bytes_read.map(|b| b as f64 / size as f64),
            (None, None) => None,
        };
        let Some(fraction) = fraction.filter(|f| f.is_finite()) else {
            return Ok(());
        };
        // Three decimals are plenty and keep the lines short.
        let value = (fraction.clamp(0.0, MAX_BEFORE_DONE) * 1000.0).floor() / 1000.0;
        if value <= self.last_value {
            return Ok(());
        }
        self.last_value = value;
        self.last_emit = Some(Instant::now());
        sink(Event::Progress { progress: value })
    }

    /// Emits the final 1.0 (once the output file is complete).
    pub fn finish(&mut self, sink: &mut EventSink) -> io::Result<()> {
        self.last_value = 1.0;
        sink(Event::Progress { progress: 1.0 })
    }
}
