//! Bytes on the wire, counted at the server's sockets: the kernel's per-socket counters
//! (`bytes_received`, `bytes_sent` of `ss -ti`) summed over the established connections on
//! the server's listening port. These are TCP payload bytes (MQTT or XML, headers of the
//! application protocol included; TCP/IP headers not), the same measure for every system.

use std::process::Command;

use anyhow::{Context, bail};

/// Byte counters summed over a listener's established connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    /// Client to server.
    pub received: u64,
    /// Server to client.
    pub sent: u64,
    /// Connections counted.
    pub sockets: usize,
}

/// The counters of every established connection whose local port is `port`.
pub fn count(port: u16) -> anyhow::Result<Bytes> {
    let out = Command::new("ss")
        .args(["-t", "-i", "-n", "-H", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .context("running ss (iproute2)")?;
    if !out.status.success() {
        bail!("ss failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

fn parse(text: &str) -> Bytes {
    let mut total = Bytes::default();
    for word in text.split_whitespace() {
        if let Some(n) = word.strip_prefix("bytes_received:") {
            total.received += n.parse::<u64>().unwrap_or(0);
        } else if let Some(n) = word.strip_prefix("bytes_sent:") {
            total.sent += n.parse::<u64>().unwrap_or(0);
        } else if word.starts_with("rtt:") {
            total.sockets += 1;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_counters_of_each_socket() {
        let text = "0 0 127.0.0.1:1883 127.0.0.1:40000\n\t cubic wscale:7,7 rto:201 rtt:0.02/0.01 \
            bytes_sent:100 bytes_acked:101 bytes_received:40 segs_out:3\n\
            0 0 127.0.0.1:1883 127.0.0.1:40002\n\t cubic rtt:0.03/0.01 bytes_sent:7 \
            bytes_received:5\n";
        assert_eq!(
            parse(text),
            Bytes {
                received: 45,
                sent: 107,
                sockets: 2
            }
        );
    }
}
