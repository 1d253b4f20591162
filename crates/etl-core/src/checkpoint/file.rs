//! Checkpoints in a local directory: one JSON document per scope, written atomically; the lease
//! is an OS file lock, which the kernel releases the moment the process dies (even by SIGKILL),
//! so a rerun after a crash never waits for an expiry.

use std::fs::OpenOptions;
use std::path::PathBuf;

use serde_json::Value;

use super::{CheckpointError, Lease, LeaseInfo, States, decode_states, encode_states};
use crate::store::StoreError;

pub struct FileCheckpoints {
    dir: PathBuf,
    /// Serialises read-modify-write of scope documents within this process.
    write: tokio::sync::Mutex<()>,
}

impl FileCheckpoints {
    pub fn new(dir: PathBuf) -> Self {
        FileCheckpoints {
            dir,
            write: tokio::sync::Mutex::new(()),
        }
    }

    pub fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn doc(&self, scope: &str) -> PathBuf {
        self.dir.join(format!("{scope}.json"))
    }

    pub async fn load(&self, scope: &str) -> Result<States, CheckpointError> {
        let path = self.doc(scope);
        match tokio::fs::read(&path).await {
            Ok(bytes) => decode_states(&path.display().to_string(), &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(States::new()),
            Err(e) => Err(StoreError::io(path.display(), e).into()),
        }
    }

    pub async fn save(
        &self,
        scope: &str,
        name: &str,
        state: &Value,
    ) -> Result<(), CheckpointError> {
        let _guard = self.write.lock().await;
        let mut states = self.load(scope).await?;
        states.insert(name.to_string(), state.clone());
        let path = self.doc(scope);
        let bytes = encode_states(&states);
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
            .await
            .map_err(|e| StoreError::io("checkpoint", std::io::Error::other(e)))??;
        Ok(())
    }

    pub async fn clear(&self, scope: &str) -> Result<(), CheckpointError> {
        let path = self.doc(scope);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path.display(), e).into()),
        }
    }

    pub async fn acquire(
        &self,
        scope: &str,
        owner: &str,
    ) -> Result<Result<Lease, LeaseInfo>, CheckpointError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::io(self.dir.display(), e))?;
        let path = self.dir.join(format!("{scope}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(path.display(), e))?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::{Seek, Write};
                // The owner text is informational, for the one who finds the lock taken.
                let _ = file.set_len(0);
                let _ = file.seek(std::io::SeekFrom::Start(0));
                let _ = file.write_all(owner.as_bytes());
                let _ = file.flush();
                Ok(Ok(Lease::file(file)))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                Ok(Err(LeaseInfo {
                    owner: holder.trim().to_string(),
                    until: None,
                }))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(path.display(), e).into()),
        }
    }
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let dir = path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(dir.display(), e))?;
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::io(path.display(), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn save_load_clear() {
        let dir = tempfile::tempdir().unwrap();
        let cp = FileCheckpoints::new(dir.path().join("cp"));
        assert!(cp.load("run").await.unwrap().is_empty());
        cp.save("run", "a", &json!({"n": 1})).await.unwrap();
        cp.save("run", "b", &json!(2)).await.unwrap();
        cp.save("run", "a", &json!({"n": 3})).await.unwrap();
        let states = cp.load("run").await.unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(states["a"], json!({"n": 3}));
        cp.clear("run").await.unwrap();
        assert!(cp.load("run").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn lease_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let cp = FileCheckpoints::new(dir.path().to_path_buf());
        let first = cp.acquire("run", "worker-1").await.unwrap().unwrap();
        let taken = cp.acquire("run", "worker-2").await.unwrap().unwrap_err();
        assert_eq!(taken.owner, "worker-1");
        drop(first);
        assert!(cp.acquire("run", "worker-2").await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn corrupt_document_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.json"), "{nope").unwrap();
        let cp = FileCheckpoints::new(dir.path().to_path_buf());
        assert!(matches!(
            cp.load("run").await,
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
