//! Lock helpers that recover a poisoned lock instead of spreading the panic. A leaf: every
//! module of the crate uses them, and they name none.

use std::sync::{Mutex, RwLock};

// Poisoning only follows a panic elsewhere; the data is plain and still usable, so recover it
// instead of spreading the panic to every session.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
