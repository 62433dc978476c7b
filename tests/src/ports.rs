//! Loopback ports for servers that the harness must name in advance (SeaweedFS takes its
//! ports on the command line; the README scripts have them written in).
//!
//! A port from `bind(127.0.0.1:0)` comes from the kernel's ephemeral range, which is also
//! where every outgoing connection takes its local port. Released and handed to a server
//! that binds it a second later, it can meanwhile become the local end of some connection
//! (SeaweedFS's own components connect to each other while they start), and the server
//! fails with "address already in use". Ports below the ephemeral range are never given
//! out that way, so only another explicit binder can take one.

use std::net::TcpListener;

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), or Linux's default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// The range ports are drawn from: below the ephemeral range if it leaves room (above
/// the registered services most machines run, 1024-10000), else above it.
fn candidate_range() -> std::ops::Range<u16> {
    let (low, high) = ephemeral_range();
    if low >= 12_000 {
        10_000..low
    } else if high <= 63_000 {
        high + 1..65_535
    } else {
        // The whole port space is ephemeral: nothing better than the kernel's choice.
        0..0
    }
}

/// `n` distinct loopback ports that were free a moment ago, outside the ephemeral range
/// where possible. Every listener is held until all are chosen, so the ports differ.
pub fn unused_loopback_ports(n: usize) -> Vec<u16> {
    let range = candidate_range();
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        let port = if range.is_empty() || tries > 10_000 {
            0
        } else {
            range.start + (rand::random::<u16>() % (range.end - range.start))
        };
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// One port, as [`unused_loopback_ports`].
pub fn unused_loopback_port() -> u16 {
    unused_loopback_ports(1)[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        let ports = unused_loopback_ports(16);
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 16, "{ports:?}");
        if !candidate_range().is_empty() {
            assert!(ports.iter().all(|p| *p < low || *p > high), "{ports:?}");
        }
        for p in ports {
            TcpListener::bind(("127.0.0.1", p)).expect("released for use");
        }
    }
}
