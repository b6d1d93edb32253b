//! The CONNECT deadline for the first bytes of a connection, which rmqtt reads without one.
//!
//! rmqtt-net 0.5 reads a new connection's first bytes (up to the protocol level, from which
//! it picks the MQTT version) with no deadline; its handshake timeout covers only the TLS and
//! WebSocket handshakes and the rest of the CONNECT. A socket that sends one byte, or none,
//! stays open for ever with its task and descriptor, and enough of them use up the process's
//! descriptors: no one could connect any more. rmqtt has no public way in between its accept
//! and its version probe, so a watcher looks from outside. Every so often it lists this
//! process's sockets (`/proc/self/fd`), notes when it first saw each connection to one of the
//! broker's listeners, and shuts down those still open past the deadline whose CONNECT never
//! reached the broker's hooks. Listing costs a path lookup per descriptor, so it lists only
//! when the system has accepted TCP connections since the last look (`PassiveOpens` in
//! `/proc/self/net/snmp`) or a connection it saw still waits for its CONNECT: an idle server
//! spends nothing on it. Shutting a socket down (not closing it: the descriptor is
//! rmqtt's) ends rmqtt's read with end-of-file, and rmqtt's task closes the descriptor.
//!
//! [`Watch`] is the decision, on virtual time; [`spawn`] runs it against the process's
//! sockets on Linux. Elsewhere the watcher does not run and the gap stays (logged at start).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A socket of this process as one scan sees it: its inode (which names it while it is
/// open) and, for a connection to one of the broker's listeners, the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Socket {
    /// The descriptor number it had when listed.
    pub(crate) fd: i32,
    pub(crate) inode: u64,
    pub(crate) peer: Option<SocketAddr>,
}

/// The peers whose CONNECT has reached the broker's hooks, shared with the hooks.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    peers: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Arrivals {
    /// Notes that a CONNECT from `peer` reached the hooks.
    pub(crate) fn arrived(&self, peer: SocketAddr, now: Instant) {
        self.lock().insert(peer, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Instant>> {
        // The map holds plain values: one a panicking thread left behind is still sound.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the watcher knows between scans, and its decision.
#[derive(Debug)]
pub(crate) struct Watch {
    deadline: Duration,
    /// Connections of the last scan whose CONNECT had not arrived: the next scan is needed
    /// even if no connection was accepted since.
    waiting: usize,
    /// Every socket of the last scan: `Some` with when it was first seen and its peer for a
    /// connection to a listener, `None` for any other socket (so it is not looked at again).
    seen: HashMap<u64, Option<(Instant, SocketAddr)>>,
}

impl Watch {
    pub(crate) fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            waiting: 0,
            seen: HashMap::new(),
        }
    }

    /// Whether a scan is needed: a connection of the last one was still waiting for its
    /// CONNECT, or connections were accepted since (`accepted`: the system's count of
    /// accepted TCP connections changed, or it is unknown).
    pub(crate) fn wants_scan(&self, accepted: bool) -> bool {
        accepted || self.waiting > 0
    }

    /// Whether a socket is known from an earlier scan (and so needs no look at its addresses).
    pub(crate) fn knows(&self, inode: u64) -> bool {
        self.seen.contains_key(&inode)
    }

    /// Takes one scan, begun at `now`, of every open socket (a known one may come without its
    /// peer), and returns the connections to shut down: open past the deadline without a
    /// CONNECT. Forgets the sockets and arrivals that are gone.
    pub(crate) fn scan(
        &mut self,
        sockets: &[Socket],
        arrivals: &Arrivals,
        now: Instant,
    ) -> Vec<(u64, SocketAddr)> {
        let mut seen = HashMap::with_capacity(sockets.len());
        for socket in sockets {
            let entry = match self.seen.get(&socket.inode) {
                Some(known) => *known,
                None => socket.peer.map(|peer| (now, peer)),
            };
            seen.insert(socket.inode, entry);
        }
        self.seen = seen;
        let mut arrived = arrivals.lock();
        let open: HashSet<SocketAddr> = self.seen.values().flatten().map(|(_, p)| *p).collect();
        // A CONNECT that arrived before this scan began, from a peer with no open connection,
        // is over. A later one may be from a connection this scan missed: kept for the next.
        arrived.retain(|peer, at| open.contains(peer) || *at >= now);
        let waiting: Vec<_> = self
            .seen
            .iter()
            .filter_map(|(inode, entry)| {
                let (first, peer) = (*entry)?;
                (!arrived.contains_key(&peer)).then_some((*inode, first, peer))
            })
            .collect();
        self.waiting = waiting.len();
        waiting
            .into_iter()
            .filter(|(_, first, _)| now.saturating_duration_since(*first) >= self.deadline)
            .map(|(inode, _, peer)| (inode, peer))
            .collect()
    }
}

/// How often the watcher looks: a quarter of the deadline, from 100 ms to 1 s. A connection
/// without a CONNECT lives from the deadline to the deadline and one interval.
fn interval(deadline: Duration) -> Duration {
    (deadline / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Starts the watcher for connections to `listeners`, with the arrivals the hooks note.
/// Returns `None` where the process's sockets cannot be listed (not Linux).
pub(crate) fn spawn(
    listeners: Vec<SocketAddr>,
    deadline: Duration,
    arrivals: Arc<Arrivals>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !sockets::available() {
        tracing::warn!(
            "this system has no /proc/self/fd: a connection that sends less than a CONNECT's first nine bytes is not closed at the connect timeout"
        );
        return None;
    }
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval(deadline));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watch = Arc::new(Mutex::new(Watch::new(deadline)));
        let listeners = Arc::new(listeners);
        let mut opens = None;
        loop {
            ticks.tick().await;
            // Listing every socket costs a path lookup per descriptor: with no connection
            // accepted since the last scan and none waiting, there is nothing to find.
            let now_opens = sockets::passive_opens();
            let accepted = now_opens.is_none() || now_opens != opens;
            let idle = !watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .wants_scan(accepted);
            if idle {
                continue;
            }
            opens = now_opens;
            let (watch, listeners, arrivals) = (watch.clone(), listeners.clone(), arrivals.clone());
            let scan = tokio::task::spawn_blocking(move || {
                let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let found = sockets::list(&listeners, |inode| watch.knows(inode));
                let fds: HashMap<u64, i32> = found.iter().map(|s| (s.inode, s.fd)).collect();
                for (inode, peer) in watch.scan(&found, &arrivals, now) {
                    if fds
                        .get(&inode)
                        .is_some_and(|fd| sockets::shut_down(*fd, inode))
                    {
                        tracing::info!(%peer, "connection closed: no CONNECT before the connect timeout");
                    }
                }
            });
            if let Err(e) = scan.await {
                tracing::error!(error = %e, "the CONNECT deadline watcher failed");
            }
        }
    });
    Some(task)
}

/// The process's sockets, through `/proc/self/fd`.
#[allow(unsafe_code)]
mod sockets {
    use std::fs::File;
    use std::net::SocketAddr;
    use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
    use std::os::unix::fs::MetadataExt;

    use super::Socket;

    const FDS: &str = "/proc/self/fd";

    pub(super) fn available() -> bool {
        std::fs::read_dir(FDS).is_ok()
    }

    /// The network namespace's count of TCP connections accepted so far (`PassiveOpens`
    /// in `/proc/self/net/snmp`), if it can be read.
    pub(super) fn passive_opens() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/net/snmp").ok()?;
        let mut tcp = text.lines().filter(|line| line.starts_with("Tcp:"));
        let (names, values) = (tcp.next()?, tcp.next()?);
        let at = names
            .split_whitespace()
            .position(|name| name == "PassiveOpens")?;
        values.split_whitespace().nth(at)?.parse().ok()
    }

    /// The inode of the socket a descriptor number names now, if it names a socket.
    fn inode_of(fd: RawFd) -> Option<u64> {
        let link = std::fs::read_link(format!("{FDS}/{fd}")).ok()?;
        let link = link.to_str()?;
        link.strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    }

    /// A descriptor of our own for the socket `fd` named when it was listed, if it is still
    /// that socket: every look at a socket goes through such a duplicate, which nothing else
    /// can close or reuse under us.
    fn own(fd: RawFd, inode: u64) -> Option<OwnedFd> {
        // SAFETY: `fd` is a number from /proc/self/fd and is only duplicated here, at once.
        // If it was closed since, the duplication fails (EBADF); if the number was reused
        // for another descriptor, the inode check below rejects the duplicate. Nothing reads
        // or writes through the borrowed number itself.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed.try_clone_to_owned().ok()?;
        let file = File::from(owned);
        let same = file.metadata().ok()?.ino() == inode;
        same.then(|| OwnedFd::from(file))
    }

    fn numbers() -> Vec<(RawFd, u64)> {
        let Ok(entries) = std::fs::read_dir(FDS) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
            .filter_map(|fd| Some((fd, inode_of(fd)?)))
            .collect()
    }

    fn listens_on(listeners: &[SocketAddr], local: SocketAddr) -> bool {
        listeners
            .iter()
            .any(|l| l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip()))
    }

    /// Every open socket; the peer of a connection to one of `listeners`, for sockets not
    /// `known` already.
    pub(super) fn list(listeners: &[SocketAddr], known: impl Fn(u64) -> bool) -> Vec<Socket> {
        numbers()
            .into_iter()
            .filter_map(|(fd, inode)| {
                if known(inode) {
                    return Some(Socket {
                        fd,
                        inode,
                        peer: None,
                    });
                }
                let owned = own(fd, inode)?;
                let socket = socket2::SockRef::from(&owned);
                let local = socket.local_addr().ok()?.as_socket();
                // A listening socket has no peer.
                let peer = socket.peer_addr().ok().and_then(|p| p.as_socket());
                let peer = match (local, peer) {
                    (Some(local), Some(peer)) if listens_on(listeners, local) => Some(peer),
                    _ => None,
                };
                Some(Socket { fd, inode, peer })
            })
            .collect()
    }

    /// Shuts a socket down both ways, if `fd` still names it; whether it did.
    pub(super) fn shut_down(fd: RawFd, inode: u64) -> bool {
        match own(fd, inode) {
            Some(owned) => socket2::SockRef::from(&owned)
                .shutdown(std::net::Shutdown::Both)
                .is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn conn(inode: u64, port: u16) -> Socket {
        Socket {
            fd: 3,
            inode,
            peer: Some(addr(port)),
        }
    }

    fn known(inode: u64) -> Socket {
        Socket {
            fd: 3,
            inode,
            peer: None,
        }
    }

    const DEADLINE: Duration = Duration::from_secs(10);

    #[test]
    fn a_connection_without_connect_is_shut_at_the_deadline_not_before() {
        let t0 = Instant::now();
        let (mut watch, arrivals) = (Watch::new(DEADLINE), Arrivals::default());
        assert!(watch.scan(&[conn(1, 5000)], &arrivals, t0).is_empty());
        let at = |s| t0 + Duration::from_secs(s);
        assert!(watch.scan(&[known(1)], &arrivals, at(9)).is_empty());
        assert_eq!(
            watch.scan(&[known(1)], &arrivals, at(10)),
            vec![(1, addr(5000))]
        );
    }

    #[test]
    fn a_connection_whose_connect_arrived_is_left_alone() {
        let t0 = Instant::now();
        let (mut watch, arrivals) = (Watch::new(DEADLINE), Arrivals::default());
        watch.scan(&[conn(1, 5000), conn(2, 5001)], &arrivals, t0);
        arrivals.arrived(addr(5000), t0 + Duration::from_secs(3));
        let shut = watch.scan(&[known(1), known(2)], &arrivals, t0 + DEADLINE);
        assert_eq!(shut, vec![(2, addr(5001))]);
        // Still open hours later: a live session.
        let later = t0 + Duration::from_secs(7200);
        assert!(watch.scan(&[known(1)], &arrivals, later).is_empty());
    }

    #[test]
    fn other_sockets_are_never_shut() {
        let t0 = Instant::now();
        let (mut watch, arrivals) = (Watch::new(DEADLINE), Arrivals::default());
        watch.scan(&[known(7)], &arrivals, t0);
        assert!(watch.knows(7));
        assert!(
            watch
                .scan(&[known(7)], &arrivals, t0 + DEADLINE * 3)
                .is_empty()
        );
    }

    #[test]
    fn gone_sockets_and_their_arrivals_are_forgotten() {
        let t0 = Instant::now();
        let (mut watch, arrivals) = (Watch::new(DEADLINE), Arrivals::default());
        watch.scan(&[conn(1, 5000)], &arrivals, t0);
        arrivals.arrived(addr(5000), t0);
        watch.scan(&[], &arrivals, t0 + Duration::from_secs(1));
        assert!(!watch.knows(1));
        assert!(arrivals.lock().is_empty());
        // A new connection from the same address and port starts its own deadline and
        // does not inherit the old one's CONNECT.
        let t1 = t0 + Duration::from_secs(2);
        watch.scan(&[conn(2, 5000)], &arrivals, t1);
        assert_eq!(
            watch.scan(&[known(2)], &arrivals, t1 + DEADLINE),
            vec![(2, addr(5000))]
        );
    }

    #[test]
    fn a_connect_during_a_scan_is_kept_for_the_next() {
        let t0 = Instant::now();
        let (mut watch, arrivals) = (Watch::new(DEADLINE), Arrivals::default());
        // The socket opened after the listing; its CONNECT arrived while the scan ran.
        let scan = t0 + Duration::from_secs(1);
        arrivals.arrived(addr(5000), scan);
        watch.scan(&[], &arrivals, scan);
        assert_eq!(arrivals.lock().len(), 1);
        watch.scan(&[conn(3, 5000)], &arrivals, scan + Duration::from_secs(1));
        assert!(
            watch
                .scan(&[known(3)], &arrivals, scan + DEADLINE * 2)
                .is_empty()
        );
    }

    #[test]
    fn scans_are_skipped_only_when_nothing_was_accepted_and_nothing_waits() {
        let t0 = Instant::now();
        let (mut watch, arrivals) = (Watch::new(DEADLINE), Arrivals::default());
        assert!(!watch.wants_scan(false));
        assert!(watch.wants_scan(true));
        watch.scan(&[conn(1, 5000)], &arrivals, t0);
        assert!(
            watch.wants_scan(false),
            "a connection waits for its CONNECT"
        );
        arrivals.arrived(addr(5000), t0);
        watch.scan(&[known(1)], &arrivals, t0 + Duration::from_secs(1));
        assert!(!watch.wants_scan(false));
    }

    #[test]
    fn the_count_of_accepted_connections_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(sockets::passive_opens().is_some());
        }
    }

    #[test]
    fn the_interval_is_a_quarter_of_the_deadline_within_bounds() {
        assert_eq!(interval(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(
            interval(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
