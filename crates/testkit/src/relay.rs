//! A TCP relay between clients and a server that plays the network: the test can cut every
//! connection, refuse new ones, and point it at another address. Its own address is bound
//! once (port 0) and held for the whole test, so a server restarted on a new port of its
//! own is reached at the same address, without waiting for the old port to be free.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Sees the bytes the server sends on one connection, in order (to count packets, say).
pub type Tap = Box<dyn FnMut(&[u8]) + Send>;

type TapMaker = Box<dyn Fn() -> Tap + Send + Sync>;

struct Shared {
    target: Mutex<SocketAddr>,
    up: watch::Sender<bool>,
    /// Bumped to close every current connection.
    cuts: watch::Sender<u64>,
    tap: Option<TapMaker>,
}

/// A relay on 127.0.0.1 to one server address at a time; it stops with the test's runtime.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("addr", &self.addr).finish()
    }
}

impl Relay {
    /// A relay to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        Self::start_tapped(target, None).await
    }

    /// A relay to `target` that hands what the server sends on each connection to a tap
    /// `tap` makes for that connection.
    pub async fn start_with_tap(
        target: SocketAddr,
        tap: impl Fn() -> Tap + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        Self::start_tapped(target, Some(Box::new(tap))).await
    }

    async fn start_tapped(target: SocketAddr, tap: Option<TapMaker>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            up: watch::channel(true).0,
            cuts: watch::channel(0).0,
            tap,
        });
        let accepting = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*accepting.up.borrow() {
                    // The network is down: the connection attempt fails at once.
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, accepting.clone()));
            }
        });
        Ok(Self { addr, shared })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://` and its address.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Closes every current connection; new ones are accepted.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// The network goes down: every connection is closed, new ones are refused.
    pub fn down(&self) {
        self.shared.up.send_replace(false);
        self.cut();
    }

    /// The network is back.
    pub fn up(&self) {
        self.shared.up.send_replace(true);
    }

    /// New connections go to `target` (a restarted server's new address); current ones
    /// stay where they are.
    pub fn retarget(&self, target: SocketAddr) {
        *self
            .shared
            .target
            .lock()
            .expect("no test thread panicked holding it") = target;
    }
}

async fn relay(mut client: TcpStream, shared: Arc<Shared>) {
    let mut cuts = shared.cuts.subscribe();
    // Only cuts after this connection began close it.
    cuts.borrow_and_update();
    let target = *shared
        .target
        .lock()
        .expect("no test thread panicked holding it");
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut tap = shared.tap.as_ref().map(|make| make());
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
    let downstream = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = server_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if let Some(tap) = &mut tap {
                tap(&buffer[..n]);
            }
            client_write.write_all(&buffer[..n]).await?;
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cuts.changed() => {}
    }
}
