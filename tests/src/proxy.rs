//! A TCP proxy that can cut every connection through it on demand, to play a
//! broken link between an agent and the coordinator.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct CutProxy {
    pub addr: SocketAddr,
    current: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (cur, stop2) = (current.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let token = match cur.lock() {
                    Ok(t) => t.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            current,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Drops every connection open through the proxy now; new ones are let through.
    pub fn cut(&self) {
        let mut cur = match self.current.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        cur.cancel();
        *cur = CancellationToken::new();
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}
