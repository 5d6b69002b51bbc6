//! A worker slot's persistent image store: the layer cache of the PR builds.
//!
//! Each slot owns `<CI_DIR>/image-store/slot-<n>/containers`, bind-mounted
//! as the sandbox's `/var/lib/containers` (native overlay driver), so the
//! cache lives in the state dir: it survives jobs and restarts, and when
//! ember-ci runs as a container it lives in the state volume with the rest.
//!
//! Why one store per slot and not one shared by all slots: every job starts
//! a fresh sandbox, whose Podman finds an empty `/run` and "refreshes" the
//! state of every container recorded in its store, and a job's cleanup
//! removes every nested container in its store. Two jobs on one store would
//! reset each other's plugin containers. The scheduler gives a slot to one
//! job at a time, so a per-slot store is never used by two jobs at once;
//! the price is that each slot warms its own cache (NUM_WORKERS copies of
//! the dependency layers) and the disk budget is split between slots.
//!
//! This module owns the host side: where the store is, how big it is, and
//! when its images were last used (`last-used.json` beside the store,
//! because Podman records no use time). It runs no Podman command; the
//! eviction order is [`super::eviction`]'s, the commands are `commands`'.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Image ids and the Unix time (seconds) a job last used each.
pub type LastUsed = HashMap<String, i64>;

const STORE_SUBDIR: &str = "containers";
const LAST_USED_FILE: &str = "last-used.json";

/// One slot's store on the host.
#[derive(Debug, Clone)]
pub struct SlotStore {
    slot_dir: PathBuf,
}

impl SlotStore {
    pub fn new(state_dir: &Path, slot: usize) -> Self {
        Self {
            slot_dir: state_dir.join("image-store").join(format!("slot-{slot}")),
        }
    }

    /// The directory mounted as the sandbox's `/var/lib/containers`.
    pub fn containers_dir(&self) -> PathBuf {
        self.slot_dir.join(STORE_SUBDIR)
    }

    pub async fn ensure(&self) -> io::Result<()> {
        tokio::fs::create_dir_all(self.containers_dir()).await
    }

    /// Bytes the store takes on disk (like `du`). Walked on the host: the
    /// overlay mounts of a running sandbox live in its own mount namespace,
    /// so only the layers' real files are counted.
    pub async fn usage_bytes(&self) -> io::Result<u64> {
        let dir = self.containers_dir();
        tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .map_err(io::Error::other)?
    }

    /// When each image was last used; an unreadable record counts as empty
    /// (eviction then falls back to creation times).
    pub async fn last_used(&self) -> LastUsed {
        match tokio::fs::read(self.slot_dir.join(LAST_USED_FILE)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => LastUsed::new(),
        }
    }

    /// Marks `used` as used now and forgets ids no longer in `present`.
    pub async fn record_use(&self, used: &HashSet<String>, present: &[String]) -> io::Result<()> {
        let now = unix_now();
        let mut record = self.last_used().await;
        record.retain(|id, _| present.contains(id));
        for id in used {
            record.insert(id.clone(), now);
        }
        let text = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
        tokio::fs::create_dir_all(&self.slot_dir).await?;
        // Written aside and renamed, so a crash never leaves half a file.
        let path = self.slot_dir.join(LAST_USED_FILE);
        let partial = path.with_extension("json.partial");
        tokio::fs::write(&partial, text).await?;
        tokio::fs::rename(&partial, &path).await
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Allocated bytes under `root`, hard links counted once, symlinks not
/// followed. Files vanishing during the walk are skipped.
fn disk_usage(root: &Path) -> io::Result<u64> {
    let mut seen_inodes = HashSet::new();
    let mut total = 0u64;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(metadata) = entry.path().symlink_metadata() else {
                continue;
            };
            if metadata.nlink() > 1 && !seen_inodes.insert((metadata.dev(), metadata.ino())) {
                continue;
            }
            total = total.saturating_add(metadata.blocks().saturating_mul(512));
            if metadata.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_hard_links_once_and_grows_with_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = disk_usage(dir.path()).expect("walk");
        let file = dir.path().join("a/b/blob");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("dirs");
        std::fs::write(&file, vec![1u8; 1 << 20]).expect("blob");
        let one = disk_usage(dir.path()).expect("walk");
        assert!(one >= empty + (1 << 20), "{one} after a 1 MiB file");
        std::fs::hard_link(&file, dir.path().join("link")).expect("hard link");
        std::os::unix::fs::symlink(&file, dir.path().join("symlink")).expect("symlink");
        let linked = disk_usage(dir.path()).expect("walk");
        assert!(linked < one + (1 << 19), "{linked} counts the blob twice");
        assert_eq!(disk_usage(&dir.path().join("missing")).expect("walk"), 0);
    }

    #[tokio::test]
    async fn last_use_is_recorded_and_forgets_removed_images() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SlotStore::new(dir.path(), 3);
        store.ensure().await.expect("store dir");
        assert!(store.last_used().await.is_empty());
        let used: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        store
            .record_use(&used, &["a".into(), "b".into()])
            .await
            .expect("record");
        let first = store.last_used().await;
        assert_eq!(first.len(), 2);
        store
            .record_use(&HashSet::new(), &["b".into()])
            .await
            .expect("record");
        let second = store.last_used().await;
        assert_eq!(second.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(second["b"], first["b"]);
        assert!(store
            .containers_dir()
            .ends_with("image-store/slot-3/containers"));
    }
}
