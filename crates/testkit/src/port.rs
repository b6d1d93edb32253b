//! A TCP port held for a server that cannot bind port 0 itself (Mosquitto 2.0): the kernel
//! picks it, and the test keeps it bound for its whole life, so no other process gets it,
//! while the server binds it, and binds it again after a restart.
//!
//! It relies on Linux's `SO_REUSEADDR`: sockets that all set it may bind the same address
//! and port while none of them listens, and one of them may then listen. The held socket
//! never listens, so a server that sets it (Mosquitto and libwebsockets do) binds the port
//! and listens, and binds it again once restarted; meanwhile the kernel hands the port to
//! no other socket's `bind` to port 0, nor to an outgoing connection.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A port on 127.0.0.1, bound and never listening while the value lives.
#[derive(Debug)]
pub struct ReservedPort {
    _socket: Socket,
    port: u16,
}

impl ReservedPort {
    /// A port the kernel picks on 127.0.0.1.
    pub fn new() -> std::io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        let port = socket
            .local_addr()?
            .as_socket()
            .map(|addr| addr.port())
            .ok_or_else(|| std::io::Error::other("an IPv4 socket has an IP address"))?;
        Ok(Self {
            _socket: socket,
            port,
        })
    }

    /// Its number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that sets `SO_REUSEADDR`, as Mosquitto does, listens on the held port, and
    /// listens again once it closed.
    #[test]
    fn a_server_binds_the_held_port_again_and_again() {
        let held = ReservedPort::new().expect("a port");
        for _ in 0..2 {
            // std's listener sets SO_REUSEADDR on Unix.
            let server = std::net::TcpListener::bind(held.addr()).expect("the server binds it");
            let client = std::net::TcpStream::connect(held.addr()).expect("connects");
            let (accepted, _) = server.accept().expect("the server accepts");
            assert_eq!(accepted.peer_addr().ok(), client.local_addr().ok());
        }
    }
}
