//! Shutdown signals, registered up front: a SIGTERM that arrives right after a process says it
//! is ready must not hit the default action (immediate death) before a handler is polled.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Registers SIGTERM and SIGINT handlers now; the future resolves on the first of them.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
