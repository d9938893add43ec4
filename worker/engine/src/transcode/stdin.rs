//! Reading the input from standard input (`--input -`): the worker writes a resumable upload
//! into a pipe as its bytes arrive, and libav reads it through a custom `AVIOContext` whose only
//! operation is `read(0, ...)`. No protocol is opened at all (the format context's
//! `protocol_whitelist` stays empty), nothing is seekable, and the child needs no file to read.
//!
//! A blocking `read` on an empty pipe simply waits: while the upload is paused the child sleeps
//! in the kernel and uses no CPU. End of file (the worker closed the pipe after the last byte)
//! is libav's `AVERROR_EOF`.

use std::ptr;

use ffmpeg::ffi;
use ffmpeg_next as ffmpeg;

use super::error::{Result, TranscodeError};

/// Size of libav's read buffer for the pipe.
const BUFFER_SIZE: usize = 64 * 1024;

/// The custom I/O context on fd 0. Must outlive the format context that reads from it (the
/// format context, opened with `AVFMT_FLAG_CUSTOM_IO`, never frees it).
pub struct StdinIo {
    ctx: *mut ffi::AVIOContext,
}

impl StdinIo {
    pub fn new() -> Result<Self> {
        // SAFETY: av_malloc returns a buffer of BUFFER_SIZE bytes (or null); avio_alloc_context
        // takes it over (it may reallocate it; the context's `buffer` field always holds the
        // current one, freed in Drop). No opaque pointer, no write or seek callback.
        unsafe {
            let buffer = ffi::av_malloc(BUFFER_SIZE) as *mut u8;
            if buffer.is_null() {
                return Err(TranscodeError::transcode("cannot allocate the input buffer"));
            }
            let ctx = ffi::avio_alloc_context(
                buffer,
                BUFFER_SIZE as libc::c_int,
                0,
                ptr::null_mut(),
                Some(read_stdin),
                None,
                None,
            );
            if ctx.is_null() {
                ffi::av_free(buffer.cast());
                return Err(TranscodeError::transcode("cannot allocate the input context"));
            }
            Ok(Self { ctx })
        }
    }

    pub fn as_ptr(&self) -> *mut ffi::AVIOContext {
        self.ctx
    }
}

impl Drop for StdinIo {
    fn drop(&mut self) {
        // SAFETY: the context and its current buffer were allocated by libav in `new` and are
        // freed once, here, after the format context using them was closed.
        unsafe {
            if !self.ctx.is_null() {
                ffi::av_freep(ptr::addr_of_mut!((*self.ctx).buffer).cast());
                ffi::avio_context_free(&mut self.ctx);
            }
        }
    }
}

/// libav's read callback: up to `size` bytes from fd 0, EOF at end of the pipe.
unsafe extern "C" fn read_stdin(_opaque: *mut libc::c_void, buf: *mut u8, size: libc::c_int) -> libc::c_int {
    loop {
        // SAFETY: libav passes a buffer of `size` writable bytes.
        let n = unsafe { libc::read(0, buf.cast(), size.max(0) as usize) };
        if n > 0 {
            return n as libc::c_int;
        }
        if n == 0 {
            return ffi::AVERROR_EOF;
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        if errno != libc::EINTR {
            return ffi::AVERROR(errno);
        }
    }
}
