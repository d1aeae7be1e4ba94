//! The address pool kept on disk: every change is saved, synced, and the
//! saves are committed as a group. A save writes the pool as it is when
//! its turn comes, with every change made so far, so the saves that
//! waited for it have nothing left to write (500 stops at once sync the
//! file a few times, not 500 times in a row).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::NetworkError;
use super::ipam::Pool;

/// The pool, each change numbered.
struct Numbered {
    pool: Pool,
    change: u64,
}

pub struct SavedPool {
    state: Arc<Mutex<Numbered>>,
    path: PathBuf,
    /// The number of the last change on disk, under the lock that orders
    /// the file's writers.
    written: Arc<Mutex<u64>>,
    /// Whose turn it is to write: the others wait here, not on a thread
    /// of the blocking pool.
    turn: tokio::sync::Mutex<()>,
}

impl SavedPool {
    /// `pool`, to be saved at `path`; not on disk yet.
    pub fn new(pool: Pool, path: PathBuf) -> SavedPool {
        SavedPool {
            state: Arc::new(Mutex::new(Numbered { pool, change: 1 })),
            path,
            written: Arc::new(Mutex::new(0)),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Numbered> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn read<R>(&self, f: impl FnOnce(&Pool) -> R) -> R {
        f(&self.lock().pool)
    }

    /// Changes the pool (in memory: [`SavedPool::save`] writes it).
    pub fn update<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> R {
        let mut state = self.lock();
        state.change += 1;
        f(&mut state.pool)
    }

    /// Writes every change made so far, synced (see [`Pool::save`]), on the
    /// blocking pool: a sync takes milliseconds, too long for the loop's
    /// threads. A failure is logged, not fatal: the next start frees every
    /// address anyway.
    pub async fn save(&self) {
        let change = self.lock().change;
        let _turn = self.turn.lock().await;
        if *self.written.lock().unwrap_or_else(|e| e.into_inner()) >= change {
            return;
        }
        let (state, path, written) = (self.state.clone(), self.path.clone(), self.written.clone());
        // The file's writers are ordered by `written`'s lock too: a save
        // whose caller gave up (and so gave up its turn) may still run.
        let saved = tokio::task::spawn_blocking(move || {
            let mut last = written.lock().unwrap_or_else(|e| e.into_inner());
            let (pool, newest) = {
                let state = state.lock().unwrap_or_else(|e| e.into_inner());
                (state.pool.clone(), state.change)
            };
            if *last >= newest {
                return Ok(());
            }
            pool.save(&path)?;
            *last = newest;
            Ok::<(), NetworkError>(())
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("network: cannot save the address pool: {e}"),
            Err(e) => tracing::warn!("network: cannot save the address pool: {e}"),
        }
    }
}
