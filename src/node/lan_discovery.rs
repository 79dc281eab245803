//! LAN discovery (`--lan-discovery`): nodes with no seeds and no discovery server find
//! each other by UDP broadcast.
//!
//! Every node broadcasts a beacon each [`BEACON_INTERVAL`] (with jitter) to the LAN
//! discovery port: the magic `GCTRLAN1`, its cluster name and its gossip address. Every
//! node listens on that port (shared through `SO_REUSEADDR`, so several nodes on one host
//! all hear the beacons) and hands the event loop the gossip address of each beacon of
//! its own cluster name, which joins through it unless it is a live member already. A
//! second cluster on the same LAN uses another `--cluster` name and stays apart.
//! Beacons are tiny, bounded and parsed without trust: anything else is ignored.

use super::event_loop::Control;
use crossbeam_channel::Sender;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The UDP port beacons go to unless configured otherwise.
pub const DEFAULT_LAN_PORT: u16 = 7947;
/// The cluster name beacons carry unless configured otherwise.
pub const DEFAULT_CLUSTER: &str = "gctr";
/// Time between two beacons of a node.
pub const BEACON_INTERVAL: Duration = Duration::from_secs(1);
const MAGIC: &[u8; 8] = b"GCTRLAN1";
/// Longest beacon read; a longer datagram is cut and then fails to parse.
const MAX_BEACON: usize = 512;

/// Where and as what a node announces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanConfig {
    /// The cluster name; only beacons carrying the same name are followed.
    pub cluster: String,
    /// The UDP port beacons are sent to and heard on.
    pub port: u16,
    /// Where beacons are sent: the limited broadcast address unless configured otherwise.
    pub broadcast: Ipv4Addr,
}

impl Default for LanConfig {
    fn default() -> LanConfig {
        LanConfig {
            cluster: DEFAULT_CLUSTER.into(),
            port: DEFAULT_LAN_PORT,
            broadcast: Ipv4Addr::BROADCAST,
        }
    }
}

/// The beaconing and listening thread; dropping it stops the thread.
pub struct LanDiscovery {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LanDiscovery {
    /// Starts announcing `gossip_addr` and following the beacons of the same cluster.
    pub fn spawn(
        config: LanConfig,
        gossip_addr: String,
        control: Sender<Control>,
    ) -> io::Result<LanDiscovery> {
        let socket = bind(config.port)?;
        let beacon = encode(&config.cluster, &gossip_addr);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            socket,
            target: SocketAddr::V4(SocketAddrV4::new(config.broadcast, config.port)),
            beacon,
            cluster: config.cluster,
            own_addr: gossip_addr,
            control,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lan-discovery".into())
            .spawn(move || worker.run())?;
        Ok(LanDiscovery {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LanDiscovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    socket.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for LAN beacons on UDP {addr}: {e}"),
        )
    })?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(BEACON_INTERVAL / 4))?;
    Ok(socket)
}

struct Worker {
    socket: UdpSocket,
    target: SocketAddr,
    beacon: Vec<u8>,
    cluster: String,
    own_addr: String,
    control: Sender<Control>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(&self) {
        let mut buf = [0u8; MAX_BEACON];
        let mut next_beacon = Instant::now();
        let mut warned = false;
        while !self.stop.load(Ordering::SeqCst) {
            if Instant::now() >= next_beacon {
                if let Err(e) = self.socket.send_to(&self.beacon, self.target) {
                    if !std::mem::replace(&mut warned, true) {
                        log::warn!("cannot broadcast a LAN beacon to {}: {e}", self.target);
                    }
                }
                let jitter = BEACON_INTERVAL.mul_f64(fastrand::f64() * 0.2);
                next_beacon = Instant::now() + BEACON_INTERVAL - BEACON_INTERVAL / 10 + jitter;
            }
            let Ok((len, _)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let found = decode(&buf[..len])
                .filter(|(cluster, addr)| *cluster == self.cluster && *addr != self.own_addr);
            if let Some((_, addr)) = found {
                if self.control.send(Control::Discovered(vec![addr])).is_err() {
                    return;
                }
            }
        }
    }
}

/// A beacon: the magic, then the cluster name and the gossip address, each a length
/// byte and UTF-8.
fn encode(cluster: &str, gossip_addr: &str) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for field in [cluster, gossip_addr] {
        let bytes = &field.as_bytes()[..field.len().min(u8::MAX as usize)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out
}

/// The cluster name and gossip address of a beacon, or `None` for anything else.
fn decode(bytes: &[u8]) -> Option<(String, String)> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut field = || {
        let (&len, tail) = rest.split_first()?;
        let (value, tail) = (tail.get(..len as usize)?, tail.get(len as usize..)?);
        rest = tail;
        String::from_utf8(value.to_vec()).ok()
    };
    let cluster = field()?;
    let addr = field()?;
    let dialable = addr
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.port() != 0 && !a.ip().is_unspecified());
    (rest.is_empty() && dialable).then_some((cluster, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_round_trip_and_anything_else_is_ignored() {
        let beacon = encode("blue", "10.0.0.2:9000");
        assert_eq!(
            decode(&beacon),
            Some(("blue".to_owned(), "10.0.0.2:9000".to_owned()))
        );
        for bad in [
            &b""[..],
            b"GCTRLAN1",
            &beacon[..beacon.len() - 1],
            &[&beacon[..], b"x"].concat(),
            &encode("blue", "0.0.0.0:9000"),
            &encode("blue", "nowhere"),
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
