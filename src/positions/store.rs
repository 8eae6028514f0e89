//! The data directory: one JSON file per kind, in the seed's file names and format, written
//! atomically so a crash at any moment leaves the old record or the new one, never a torn one.
//!
//! A write goes to a temporary file in the same directory, is fsynced, renamed over the
//! record, and the directory is fsynced so the rename itself survives a power loss. Callers
//! serialize writes per kind (see `channel`); this module is blocking I/O, run it off the
//! async threads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::{Kind, Record};

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating it if needed) the data directory and removes temporary files a crash
    /// may have left.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        Self::remove_temporary_files(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// A store in `dir` that is created by its first write, not before (one per user: a user
    /// who only reads leaves nothing behind). Temporary files a crash left are removed.
    pub fn open_lazily(dir: &Path) -> io::Result<Store> {
        match Self::remove_temporary_files(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn remove_temporary_files(dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let is_temp = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
            if is_temp {
                tracing::info!(path = %path.display(), "removing a temporary file left by a crash");
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, kind: Kind) -> PathBuf {
        self.dir.join(kind.file_name())
    }

    /// The stored record of `kind`, if any. A file that cannot be read as a record (say, one
    /// the seed server tore in a crash) is moved aside as `<name>.corrupt-<ms>` and reported,
    /// so it is kept for inspection and the next write does not destroy it.
    pub fn load(&self, kind: Kind) -> io::Result<Option<Record>> {
        let path = self.path(kind);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match Record::from_stored(kind, &bytes) {
            Some(record) => Ok(Some(record)),
            None => {
                let aside = self.dir.join(format!(
                    "{}.corrupt-{}",
                    kind.file_name(),
                    crate::clock::now_ms()
                ));
                fs::rename(&path, &aside)?;
                tracing::error!(
                    file = %path.display(), moved_to = %aside.display(),
                    "stored position is not a valid record; starting without it"
                );
                Ok(None)
            }
        }
    }

    /// Durably replaces the record of `kind` with `json`.
    pub fn save(&self, kind: Kind, json: &[u8]) -> io::Result<()> {
        let target = self.path(kind);
        let temp = self
            .dir
            .join(format!(".{}.{}.tmp", kind.file_name(), std::process::id()));
        let create = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)
        };
        let result = (|| {
            let mut file = match create() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A lazily opened store: its directory comes with its first record.
                    fs::create_dir_all(&self.dir)?;
                    if let Some(parent) = self.dir.parent() {
                        File::open(parent)?.sync_all()?;
                    }
                    create()?
                }
                other => other?,
            };
            file.write_all(json)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, &target)?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::record::parse_update;

    fn record(kind: Kind, body: &str, ts: u64) -> Record {
        parse_update(kind, body.as_bytes(), 4096).unwrap().stamp(ts)
    }

    #[test]
    fn saves_and_loads_each_kind_in_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("nested/data")).unwrap();
        assert_eq!(store.load(Kind::Playback).unwrap(), None);
        let p = record(Kind::Playback, r#"{"lastPlayedIndex": 3}"#, 10);
        let s = record(Kind::Scroll, r#"{"scrollTop": 250}"#, 11);
        store.save(Kind::Playback, &p.to_json()).unwrap();
        store.save(Kind::Scroll, &s.to_json()).unwrap();
        assert_eq!(store.load(Kind::Playback).unwrap(), Some(p));
        assert_eq!(store.load(Kind::Scroll).unwrap(), Some(s.clone()));
        let raw = fs::read(store.dir().join("scroll-position.json")).unwrap();
        assert_eq!(raw, s.to_json());
    }

    #[test]
    fn a_lazy_store_creates_its_directory_with_its_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let user_dir = dir.path().join("users/alice");
        let store = Store::open_lazily(&user_dir).unwrap();
        assert_eq!(store.load(Kind::Scroll).unwrap(), None);
        assert!(!user_dir.exists());
        let s = record(Kind::Scroll, r#"{"scrollTop": 1}"#, 5);
        store.save(Kind::Scroll, &s.to_json()).unwrap();
        assert_eq!(store.load(Kind::Scroll).unwrap(), Some(s));
        fs::write(user_dir.join(".scroll-position.json.7.tmp"), b"{").unwrap();
        Store::open_lazily(&user_dir).unwrap();
        assert!(!user_dir.join(".scroll-position.json.7.tmp").exists());
    }

    #[test]
    fn a_torn_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("playback-position.json"),
            b"{\"lastPlayedIndex\": 4",
        )
        .unwrap();
        fs::write(dir.path().join(".playback-position.json.99.tmp"), b"{").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load(Kind::Playback).unwrap(), None);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("playback-position.json.corrupt-"));
    }
}
