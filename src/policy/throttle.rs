//! A per-key budget kept in this process's memory: at most `per_window`
//! uses per key in each fixed window, for work that must not be done
//! without bound when a client floods (audit events of refusals). Its
//! memory is bounded: past `max_keys` keys, the windows that have ended
//! are dropped, and if none has, the whole table starts afresh.

use std::collections::HashMap;
use std::sync::Mutex;

/// See the module documentation.
pub struct Throttle {
    per_window: u32,
    window_secs: i64,
    max_keys: usize,
    /// Key to (window start, uses in it).
    used: Mutex<HashMap<String, (i64, u32)>>,
}

impl Throttle {
    pub fn new(per_window: u32, window_secs: i64, max_keys: usize) -> Self {
        Self {
            per_window,
            window_secs: window_secs.max(1),
            max_keys: max_keys.max(1),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// True when `key` may have one more use at `now` (and counts it).
    pub fn allow(&self, key: &str, now: i64) -> bool {
        let window = now - now.rem_euclid(self.window_secs);
        // A poisoned lock only means another thread panicked mid-count: the
        // counts are still usable.
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if used.len() >= self.max_keys && !used.contains_key(key) {
            used.retain(|_, (start, _)| *start == window);
            if used.len() >= self.max_keys {
                used.clear();
            }
        }
        let entry = used.entry(key.to_string()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= self.per_window {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// How many keys are tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_budget_per_window_and_memory_stays_bounded() {
        let t = Throttle::new(3, 60, 100);
        let allowed = (0..10).filter(|_| t.allow("a", 120)).count();
        assert_eq!(allowed, 3);
        assert!(t.allow("b", 120), "another key has its own budget");
        assert!(t.allow("a", 180), "a new window starts afresh");
        for i in 0..10_000 {
            t.allow(&format!("k{i}"), 180);
        }
        assert!(t.len() <= 100);
    }
}
