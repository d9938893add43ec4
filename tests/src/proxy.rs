//! A loopback TCP proxy in front of the API that cuts client connections mid-request: the
//! first `cuts` connections are closed after `after` bytes from the client, later ones are
//! forwarded whole. `on_cut` runs at each cut (e.g. to kill the server behind).

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

pub struct CuttingProxy {
    pub url: String,
    /// Connections cut so far.
    pub cut: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CuttingProxy {
    pub async fn start(
        upstream: std::net::SocketAddr,
        cuts: usize,
        after: u64,
        on_cut: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicUsize::new(0));
        let on_cut = Arc::new(on_cut);
        let counter = cut.clone();
        let task = tokio::spawn(async move {
            let mut accepted = 0usize;
            while let Ok((client, _)) = listener.accept().await {
                accepted += 1;
                let limit = (accepted <= cuts).then_some(after);
                let (counter, on_cut) = (counter.clone(), on_cut.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    if relay(client, server, limit).await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        on_cut();
                    }
                });
            }
        });
        Self { url, cut, task }
    }
}

/// Relays both ways; with a limit, closes both sides once the client has sent that many bytes.
/// Whether it cut.
async fn relay(client: TcpStream, server: TcpStream, limit: Option<u64>) -> bool {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let cut = loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break false,
            Ok(n) => n,
        };
        if limit.is_some_and(|l| sent + n as u64 > l) {
            break true;
        }
        if sw.write_all(&buf[..n]).await.is_err() {
            break false;
        }
        sent += n as u64;
    };
    if cut {
        down.abort();
        return true;
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
    false
}
