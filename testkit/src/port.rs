//! Loopback ports for the servers a test starts.
//!
//! A port is chosen before its server binds it, often seconds later (a
//! process has to start, or a test starts other servers first). A port the
//! kernel handed out for `127.0.0.1:0` lies in its ephemeral range, from
//! which every `bind(0)` and outgoing connection meanwhile draws too: under
//! load another server took such a port first and the one it was meant for
//! never started (CI saw a coordinator and a Keycloak lose theirs). So the
//! port is drawn at random from below the ephemeral range, where nothing
//! takes ports unasked; what can still collide is another test's draw of
//! the same port in the same moment.
use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::sync::Mutex;

use anyhow::bail;

/// The lowest port drawn: above the registered services most machines run.
const FLOOR: u16 = 10_000;
/// Linux's default low end of the ephemeral range, when it cannot be read.
const EPHEMERAL_LOW: u16 = 32_768;

/// Ports this process has handed out, never handed out twice.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nothing listens on now, below the ephemeral range.
pub fn free_port() -> anyhow::Result<u16> {
    let top = ephemeral_low().max(FLOOR + 1_000);
    let span = u64::from(top - FLOOR);
    let mut given = match GIVEN.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1_000 {
        let port = FLOOR + (random() % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port between {FLOOR} and {top} after 1,000 tries")
}

/// The low end of the kernel's ephemeral port range.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_LOW)
}

/// A random number from the standard library's per-process random keys.
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("a free port")).collect();
        let distinct: HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!(
                (FLOOR..low).contains(&p),
                "port {p} is not in {FLOOR}..{low}"
            );
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
        }
    }
}
