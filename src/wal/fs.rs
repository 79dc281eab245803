//! The file layer: every file operation the WAL does goes through [`FileSystem`], so
//! tests can swap in a double that fails chosen writes, fsyncs or truncations.
//!
//! The operations are the few a log needs — append, fsync, truncate, whole-file reads
//! with a size limit, atomic replace by rename, directory fsync, and an exclusive lock —
//! and nothing else, which keeps the double small and honest.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An open file the WAL appends to. It writes at its own position: the end of the file
/// when opened, moved by each append and by `truncate`, and left alone by `preallocate`.
pub trait WalFile: Send {
    /// Writes all of `buf` at the file's position, and moves the position past it.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes; later appends go after that point.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file at least `len` bytes long (zeros), without moving the position, so
    /// the appends that fill it need not extend the file before their fsync.
    fn preallocate(&mut self, len: u64) -> io::Result<()>;
}

/// A held exclusive lock; dropping it releases the lock.
pub trait DirLock: Send {}

/// The file operations of the WAL, path by path.
pub trait FileSystem: Send + Sync {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir` (files only matter; no order promised).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// The whole file, refused with `InvalidData` if it is longer than `max_len`
    /// (checked before anything is allocated).
    fn read(&self, path: &Path, max_len: u64) -> io::Result<Vec<u8>>;
    /// Creates (or empties) `path` for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing), failing at once if another
    /// holder has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

struct RealFile {
    file: File,
    /// Where the next append goes.
    pos: u64,
}

impl WalFile for RealFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.pos = len;
        Ok(())
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        if self.file.metadata()?.len() < len {
            self.file.set_len(len)?;
        }
        Ok(())
    }
}

/// Holds the locked file open; the lock goes with it.
struct RealLock {
    _file: File,
}

impl DirLock for RealLock {}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn read(&self, path: &Path, max_len: u64) -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        if len > max_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is {len} bytes, over the {max_len}-byte limit"),
            ));
        }
        let mut buf = Vec::with_capacity(len as usize);
        Read::by_ref(&mut file)
            .take(max_len)
            .read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(RealFile { file, pos: 0 }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        let pos = file.metadata()?.len();
        Ok(Box::new(RealFile { file, pos }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => {
                io::Error::new(io::ErrorKind::WouldBlock, "another process holds the lock")
            }
            fs::TryLockError::Error(e) => e,
        })?;
        Ok(Box::new(RealLock { _file: file }))
    }
}

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old file or the
/// whole new one: write a temporary file, fsync it, rename it over, fsync the directory.
pub fn write_atomic(fs: &dyn FileSystem, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut file = fs.create(&tmp)?;
    file.append(bytes)?;
    file.sync()?;
    drop(file);
    fs.rename(&tmp, &dir.join(name))?;
    fs.sync_dir(dir)
}

/// Suffix of files being written; any left at open are leftovers of a crash.
pub const TMP_SUFFIX: &str = ".tmp";
