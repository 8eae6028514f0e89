//! [`Registry`]: a compact slab of live things (connections, sockets) for iteration.

use std::sync::{Mutex, MutexGuard};

/// Values in numbered slots; a slot's number is its key until removed. Costs about one
/// pointer per live value (plus the free list), so 10,000 connections cost ~160 KB.
pub(crate) struct Registry<T> {
    inner: Mutex<Slab<T>>,
}

struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T: Clone> Registry<T> {
    pub(crate) fn new() -> Self {
        Registry {
            inner: Mutex::new(Slab {
                slots: Vec::new(),
                free: Vec::new(),
                len: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slab<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, value: T) -> usize {
        let mut slab = self.lock();
        slab.len += 1;
        match slab.free.pop() {
            Some(key) => {
                if let Some(slot) = slab.slots.get_mut(key) {
                    *slot = Some(value);
                }
                key
            }
            None => {
                slab.slots.push(Some(value));
                slab.slots.len() - 1
            }
        }
    }

    pub(crate) fn remove(&self, key: usize) -> Option<T> {
        let mut slab = self.lock();
        let value = slab.slots.get_mut(key)?.take()?;
        slab.len -= 1;
        if key + 1 == slab.slots.len() {
            slab.slots.pop();
        } else {
            slab.free.push(key);
        }
        if slab.len == 0 {
            slab.slots = Vec::new();
            slab.free = Vec::new();
        }
        Some(value)
    }

    /// A snapshot of the live values (the lock is not held while the caller uses them).
    pub(crate) fn values(&self) -> Vec<T> {
        self.lock().slots.iter().flatten().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_and_values_listed() {
        let r = Registry::new();
        let a = r.insert("a");
        let b = r.insert("b");
        let c = r.insert("c");
        assert_eq!(r.remove(b), Some("b"));
        assert_eq!(r.remove(b), None);
        let d = r.insert("d");
        assert_eq!(d, b);
        assert_eq!(r.values(), ["a", "d", "c"]);
        assert_eq!(r.len(), 3);
        r.remove(a);
        r.remove(c);
        r.remove(d);
        assert_eq!(r.len(), 0);
        assert!(r.values().is_empty());
        assert_eq!(r.insert("e"), 0);
    }
}
