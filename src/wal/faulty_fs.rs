//! A test double for the file layer: the real file system, except that the Nth write,
//! fsync or truncate from now on fails (and every later one too while `stuck` is set),
//! so tests can check what a failed append leaves behind; and fsyncs can be held until
//! released, a disk as slow as a test needs (a 50 ms fsync, or one that never ends until
//! the test has checked what goes on meanwhile).

use super::fs::{DirLock, FileSystem, RealFs, WalFile};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Which operation to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write,
    Sync,
    Truncate,
}

#[derive(Default)]
struct Plan {
    /// Per op: how many more calls succeed before one fails (0: no failure planned).
    countdown: [AtomicU64; 3],
    /// Per op: keep failing after the first failure until `heal`.
    stuck: [AtomicBool; 3],
    failing: [AtomicBool; 3],
    /// Failures injected so far.
    injected: AtomicU64,
    /// Whether fsyncs are held, and how many wait right now.
    held: Mutex<Held>,
    released: Condvar,
}

#[derive(Default)]
struct Held {
    holding: bool,
    waiting: u64,
}

#[derive(Clone, Default)]
pub struct FaultyFs {
    plan: Arc<Plan>,
}

impl FaultyFs {
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// Makes the `nth` (1-based) `op` from now fail; with `stuck`, every later one fails
    /// too until [`FaultyFs::heal`].
    pub fn fail_nth(&self, op: Op, nth: u64, stuck: bool) {
        let i = op as usize;
        self.plan.countdown[i].store(nth, Ordering::SeqCst);
        self.plan.stuck[i].store(stuck, Ordering::SeqCst);
    }

    /// Stops every planned and ongoing failure.
    pub fn heal(&self) {
        for i in 0..3 {
            self.plan.countdown[i].store(0, Ordering::SeqCst);
            self.plan.failing[i].store(false, Ordering::SeqCst);
        }
    }

    pub fn injected(&self) -> u64 {
        self.plan.injected.load(Ordering::SeqCst)
    }

    /// Makes every fsync from now on (file or directory) wait until
    /// [`FaultyFs::release_syncs`].
    pub fn hold_syncs(&self) {
        self.plan.held.lock().unwrap().holding = true;
    }

    /// Lets held fsyncs finish, and later ones run at once.
    pub fn release_syncs(&self) {
        self.plan.held.lock().unwrap().holding = false;
        self.plan.released.notify_all();
    }

    /// How many fsyncs are waiting to be released right now.
    pub fn syncs_held(&self) -> u64 {
        self.plan.held.lock().unwrap().waiting
    }

    fn wait_while_held(&self) {
        let mut held = self.plan.held.lock().unwrap();
        if !held.holding {
            return;
        }
        held.waiting += 1;
        while held.holding {
            held = self.plan.released.wait(held).unwrap();
        }
        held.waiting -= 1;
    }

    fn check(&self, op: Op) -> io::Result<()> {
        let i = op as usize;
        let plan = &self.plan;
        let fail = if plan.failing[i].load(Ordering::SeqCst) {
            true
        } else {
            let left = plan.countdown[i].load(Ordering::SeqCst);
            if left == 0 {
                false
            } else {
                plan.countdown[i].store(left - 1, Ordering::SeqCst);
                if left == 1 && plan.stuck[i].load(Ordering::SeqCst) {
                    plan.failing[i].store(true, Ordering::SeqCst);
                }
                left == 1
            }
        };
        if fail {
            plan.injected.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other(format!("injected {op:?} failure")));
        }
        Ok(())
    }
}

struct FaultyFile {
    inner: Box<dyn WalFile>,
    fs: FaultyFs,
}

impl WalFile for FaultyFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Err(e) = self.fs.check(Op::Write) {
            // A failing disk may still take part of the write.
            self.inner.append(&buf[..buf.len() / 2])?;
            return Err(e);
        }
        self.inner.append(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.fs.wait_while_held();
        self.fs.check(Op::Sync)?;
        self.inner.sync()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.fs.check(Op::Truncate)?;
        self.inner.truncate(len)
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.inner.preallocate(len)
    }
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        RealFs.exists(path)
    }

    fn read(&self, path: &Path, max_len: u64) -> io::Result<Vec<u8>> {
        RealFs.read(path, max_len)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        Ok(Box::new(FaultyFile {
            inner: RealFs.create(path)?,
            fs: self.clone(),
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        Ok(Box::new(FaultyFile {
            inner: RealFs.open_append(path)?,
            fs: self.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.wait_while_held();
        self.check(Op::Sync)?;
        RealFs.sync_dir(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        RealFs.lock(path)
    }
}
