//! The gossip keyring's cost in bytes and CPU, measured with the node's own sealing
//! code (`gctr::keyring`): the bytes a sealed TCP frame and a sealed datagram add, the
//! bytes of a keyed handshake, and the time to seal and open a small frame (one counter
//! entry, what an eager push of one increment carries), a 64 KiB frame and a probe
//! datagram.

use gctr::codec::{self, Frame};
use gctr::crdt::{CounterEntry, Origin, OriginDelta};
use gctr::keyring::datagram::{DatagramOpener, DatagramSealer};
use gctr::keyring::session::{self, SERVER_HELLO_LEN};
use gctr::keyring::{Key, Keyring};
use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub struct Settings {
    pub reps: usize,
}

fn push(entries: u64) -> Vec<u8> {
    let delta = OriginDelta {
        origin: Origin::new("bench-node", 1),
        from: 0,
        to: entries,
        entries: (1..=entries)
            .map(|v| CounterEntry {
                counter: format!("counter-{v:08}"),
                p: v,
                n: 0,
                version: v,
                keyed: None,
            })
            .collect(),
    };
    codec::encode(&Frame::Push { delta: vec![delta] })
}

/// Nanoseconds to seal and open one frame of `frame`'s size on a keyed connection,
/// and the bytes sealing added.
fn tcp(keyring: &Keyring, frame: &[u8], reps: usize) -> io::Result<(f64, usize)> {
    let (hello, pending) = session::connect(keyring).map_err(io::Error::other)?;
    let (answer, mut opener) = session::accept(keyring, &hello).map_err(io::Error::other)?;
    let mut sealer = pending.finish(&answer).map_err(io::Error::other)?;
    let (header, payload) = frame.split_at(codec::HEADER_LEN);
    let mut buf = Vec::with_capacity(frame.len() + 16);
    let mut added = 0;
    let start = Instant::now();
    for _ in 0..reps {
        buf.clear();
        buf.extend_from_slice(payload);
        let tag = sealer.seal(header, &mut buf).map_err(io::Error::other)?;
        buf.extend_from_slice(&tag);
        added = buf.len() - payload.len();
        opener.open(header, &mut buf).map_err(io::Error::other)?;
    }
    Ok((start.elapsed().as_nanos() as f64 / reps as f64, added))
}

pub fn run(settings: &Settings) -> io::Result<()> {
    let reps = settings.reps.max(1) * 1000;
    let keyring = Keyring::new(Key::generate()?);
    let small = push(1);
    let large = push(2200);
    let (small_ns, tcp_added) = tcp(&keyring, &small, reps)?;
    let (large_ns, _) = tcp(&keyring, &large, reps / 50 + 1)?;
    let (hello, _) = session::connect(&keyring).map_err(io::Error::other)?;
    let handshake = hello.encode().len() + SERVER_HELLO_LEN;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(io::Error::other)?
        .as_micros() as u64;
    let mut dsealer = DatagramSealer::new()?;
    let mut dopener = DatagramOpener::default();
    let probe = &small[..small.len().min(120)];
    let mut udp_added = 0;
    let start = Instant::now();
    for i in 0..reps {
        let sealed = dsealer.seal(&keyring, now + i as u64, probe);
        udp_added = sealed.len() - probe.len();
        dopener
            .open(&keyring, now, &sealed)
            .map_err(io::Error::other)?;
    }
    let udp_ns = start.elapsed().as_nanos() as f64 / reps as f64;
    let large_mib_s = large.len() as f64 / (large_ns / 1e9) / (1 << 20) as f64;
    println!(
        "small frame {} B: seal+open {small_ns:.0} ns; {} B frame: {large_ns:.0} ns ({large_mib_s:.0} MiB/s); \
         {}-byte probe datagram: {udp_ns:.0} ns",
        small.len(),
        large.len(),
        probe.len()
    );
    println!(
        "RESULT tcp_overhead_bytes={tcp_added} udp_overhead_bytes={udp_added} \
         handshake_bytes={handshake} small_frame_bytes={} small_ns={small_ns:.0} \
         large_frame_bytes={} large_ns={large_ns:.0} large_mib_s={large_mib_s:.0} udp_ns={udp_ns:.0}",
        small.len(),
        large.len()
    );
    Ok(())
}
