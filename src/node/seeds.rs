//! Seeds by name: a thread that resolves `--seeds` (addresses or DNS names with a port)
//! at start and every [`RESOLVE_INTERVAL`] after, and hands the event loop every address
//! they resolve to whenever that set changes. A Kubernetes headless service or a Compose
//! service name is then a seed list that follows the pods or containers behind it.
//!
//! Resolving blocks, so it never runs on the event loop. A name that does not resolve is
//! logged once (and once again when it resolves) and retried at the next interval.

use super::event_loop::Control;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::net::ToSocketAddrs;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often seeds are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(10);

/// The resolving thread; dropping it stops the thread.
pub struct SeedResolver {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SeedResolver {
    /// Starts resolving `seeds` (`host:port` each), reporting to `control`. Without seeds
    /// no thread is started.
    pub fn spawn(seeds: Vec<String>, control: Sender<Control>) -> std::io::Result<SeedResolver> {
        if seeds.is_empty() {
            return Ok(SeedResolver {
                stop: None,
                thread: None,
            });
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("seed-resolver".into())
            .spawn(move || resolve_until_stopped(&seeds, &control, &stop_rx))?;
        Ok(SeedResolver {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for SeedResolver {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn resolve_until_stopped(seeds: &[String], control: &Sender<Control>, stop: &Receiver<()>) {
    let mut failing: BTreeMap<&str, bool> = BTreeMap::new();
    let mut last: Option<BTreeSet<String>> = None;
    loop {
        let mut addrs = BTreeSet::new();
        for seed in seeds {
            let resolved = seed.to_socket_addrs().map(|a| a.collect::<Vec<_>>());
            let ok = matches!(&resolved, Ok(a) if !a.is_empty());
            let was_failing = failing.insert(seed, !ok).unwrap_or(false);
            match resolved {
                Ok(found) if !found.is_empty() => {
                    if was_failing {
                        log::info!("seed {seed} resolves again");
                    }
                    addrs.extend(found.iter().map(|a| a.to_string()));
                }
                Ok(_) if !was_failing => log::warn!("seed {seed} resolves to no address"),
                Err(e) if !was_failing => log::warn!("cannot resolve seed {seed}: {e}"),
                _ => {}
            }
        }
        if last.as_ref() != Some(&addrs) {
            if control
                .send(Control::Seeds(addrs.iter().cloned().collect()))
                .is_err()
            {
                return;
            }
            last = Some(addrs);
        }
        match stop.recv_timeout(RESOLVE_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_resolve_to_addresses() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let resolver =
            SeedResolver::spawn(vec!["localhost:9000".into(), "127.0.0.2:9001".into()], tx)
                .unwrap();
        let Ok(Control::Seeds(addrs)) = rx.recv_timeout(Duration::from_secs(10)) else {
            panic!("no seeds resolved");
        };
        assert!(addrs.contains(&"127.0.0.2:9001".to_owned()), "{addrs:?}");
        assert!(addrs.iter().any(|a| a.ends_with(":9000")), "{addrs:?}");
        drop(resolver);
    }
}
