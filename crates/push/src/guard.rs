//! Devices choose their Web Push and UnifiedPush endpoints, so a device could point the
//! server at its own network (loopback, private ranges, cloud metadata addresses). Unless the
//! operator allows it, such endpoints are refused: literal addresses when the URL is parsed,
//! names when they resolve (every address a name resolves to is checked, so a public name
//! that resolves to a private address is refused too).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

/// Whether `ip` is reachable on the public internet (and so fit for a device's endpoint).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (18..20).contains(&b))
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local, fc00::/7.
        || (first & 0xfe00) == 0xfc00
        // Link-local, fe80::/10.
        || (first & 0xffc0) == 0xfe80
        // Documentation, 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// The error a refused name resolves to; found again in the error chain to report the
/// target invalid rather than retry it.
#[derive(Debug, thiserror::Error)]
#[error("endpoint resolves only to non-public addresses")]
pub(crate) struct NotPublic;

/// The system resolver, keeping only public addresses unless private ones are allowed.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    inner: GaiResolver,
    allow_private: bool,
}

impl Resolver {
    pub fn new(allow_private: bool) -> Self {
        Resolver {
            inner: GaiResolver::new(),
            allow_private,
        }
    }
}

type Addresses = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Resolver {
    type Response = Addresses;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Addresses>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.inner.call(name);
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = resolving.await?.collect();
            if allow_private {
                return Ok(addresses.into_iter());
            }
            let public: Vec<SocketAddr> = addresses
                .into_iter()
                .filter(|address| is_public(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, NotPublic));
            }
            Ok(public.into_iter())
        })
    }
}

/// Whether a client error came from [`NotPublic`].
pub(crate) fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<NotPublic>())
        {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, public: bool) {
        let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(is_public(ip), public, "{text}");
    }

    #[test]
    fn addresses() {
        for text in [
            "8.8.8.8",
            "142.250.74.10",
            "2a00:1450:4007:80e::200a",
            "17.188.1.1",
        ] {
            check(text, true);
        }
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            check(text, false);
        }
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        use tower_service::Service as _;
        let name: Name = "localhost".parse().unwrap_or_else(|_| unreachable!());
        let error = Resolver::new(false).call(name.clone()).await.err();
        assert!(
            error.as_ref().is_some_and(|error| refused(error)),
            "{error:?}"
        );
        let allowed = Resolver::new(true).call(name).await.map(Iterator::count);
        assert!(allowed.is_ok_and(|n| n > 0));
    }
}
