//! mediaq's transcode engine: everything that links libav. The synchronous `mediaq-transcode`
//! child (one process per attempt) applies its own sandbox ([`sandbox`]), then converts one
//! WebM file to MP4 ([`transcode`]), speaking the line protocol of [`mediaq_protocol`].
//! `mediaq-worker` never links this crate: it runs the child's binary.

/// The child's side of the protocol (the engine's modules name it `crate::protocol`).
pub use mediaq_protocol as protocol;

pub mod sandbox;
pub mod transcode;
