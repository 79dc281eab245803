//! The node's identity in its data directory, and the markers that tell a clean stop
//! from a crash.
//!
//! `identity` is a small JSON file (`{"format":1,"node":...,"incarnation":...}`) written
//! atomically when the directory is created, and again only when the node must take a new
//! incarnation. `clean-shutdown` is written by a clean close and removed at open;
//! `weak-fsync` exists while a run under a fsync policy weaker than `Always` has the
//! directory open. A weak run that ends without `clean-shutdown` may have acknowledged
//! changes it never made durable, possibly already gossiped, so the next open must not
//! reuse its origin.

use super::error::WalError;
use super::fs::{write_atomic, FileSystem};
use crate::crdt::{validate_node_name, Origin};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const IDENTITY_FILE: &str = "identity";
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
pub const WEAK_FSYNC_FILE: &str = "weak-fsync";
const IDENTITY_FORMAT: u32 = 1;
const MAX_IDENTITY_BYTES: u64 = 4096;

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    format: u32,
    node: String,
    incarnation: u64,
}

/// A fresh incarnation: random, never 0.
pub fn new_incarnation() -> u64 {
    fastrand::u64(1..)
}

/// Reads the identity, or `None` if the directory has none yet.
pub fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Origin>, WalError> {
    let path = dir.join(IDENTITY_FILE);
    if !fs
        .exists(&path)
        .map_err(|e| WalError::io(format!("check {}", path.display()), e))?
    {
        return Ok(None);
    }
    let corrupt = |reason: String| WalError::Corruption {
        file: path.clone(),
        offset: 0,
        reason,
    };
    let bytes = fs
        .read(&path, MAX_IDENTITY_BYTES)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => corrupt(e.to_string()),
            _ => WalError::io(format!("read {}", path.display()), e),
        })?;
    let file: IdentityFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not an identity: {e}")))?;
    if file.format != IDENTITY_FORMAT {
        return Err(corrupt(format!(
            "unsupported identity format {}",
            file.format
        )));
    }
    validate_node_name(&file.node).map_err(|e| corrupt(e.0))?;
    Ok(Some(Origin::new(file.node, file.incarnation)))
}

/// Writes the identity atomically.
pub fn write(fs: &dyn FileSystem, dir: &Path, origin: &Origin) -> Result<(), WalError> {
    let file = IdentityFile {
        format: IDENTITY_FORMAT,
        node: origin.node.clone(),
        incarnation: origin.incarnation,
    };
    let bytes = serde_json::to_vec(&file).expect("identity serializes");
    write_atomic(fs, dir, IDENTITY_FILE, &bytes)
        .map_err(|e| WalError::io(format!("write {}", dir.join(IDENTITY_FILE).display()), e))
}

pub fn marker_exists(fs: &dyn FileSystem, dir: &Path, name: &str) -> Result<bool, WalError> {
    let path = dir.join(name);
    fs.exists(&path)
        .map_err(|e| WalError::io(format!("check {}", path.display()), e))
}

/// Creates a marker durably.
pub fn set_marker(fs: &dyn FileSystem, dir: &Path, name: &str) -> Result<(), WalError> {
    write_atomic(fs, dir, name, b"")
        .map_err(|e| WalError::io(format!("write {}", dir.join(name).display()), e))
}

/// Removes a marker durably, if it exists.
pub fn clear_marker(fs: &dyn FileSystem, dir: &Path, name: &str) -> Result<(), WalError> {
    if !marker_exists(fs, dir, name)? {
        return Ok(());
    }
    let path = dir.join(name);
    fs.remove(&path)
        .and_then(|()| fs.sync_dir(dir))
        .map_err(|e| WalError::io(format!("remove {}", path.display()), e))
}
