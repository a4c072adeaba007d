//! Data dirs on disk: walking their files, and taking a dir away (a lost
//! disk) and bringing it back.

use std::path::{Path, PathBuf};

/// The shard dirs (`shard-NNNN`) a data dir was formatted with.
pub fn shard_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("shard-")).count()
}

/// Every file under `dir`, recursively (unreadable dirs are skipped).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Where `take_away` moves a data dir.
pub fn gone(d: &Path) -> PathBuf {
    d.with_extension("gone")
}

/// Moves a data dir away, as a lost disk.
pub fn take_away(d: &Path) {
    std::fs::rename(d, gone(d)).expect("move the data dir away");
}

/// Puts back a dir `take_away` moved.
pub fn bring_back(d: &Path) {
    std::fs::rename(gone(d), d).expect("bring the data dir back");
}
