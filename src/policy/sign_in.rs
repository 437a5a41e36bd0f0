//! Failed console sign-ins, counted per (user name, client address) so that
//! a stranger guessing a password locks out only their own address, never
//! the user. Held in memory, in a table of bounded size: a replica counts
//! what it sees, and a restart forgets (the lock is a brake on guessing, not
//! a record).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failed sign-ins in a row, as one user name from one address, that lock
/// that pair...
pub const LIMIT: u32 = 5;
/// ...for this long; failures further apart than this are not "in a row".
pub const LOCK_SECS: i64 = 15 * 60;
/// Most (name, address) pairs remembered: about 100 bytes each, so a couple
/// of MiB at most, however many names or addresses a client makes up.
const CAPACITY: usize = 16_384;

/// SHA-256 of the name (a sign-in form may carry a long one) and the
/// client's network.
type Key = ([u8; 32], IpAddr);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: i64,
    locked_until: i64,
}

impl Entry {
    /// Still worth remembering: locked, or a failure recent enough to count.
    fn live(&self, now: i64) -> bool {
        now < self.locked_until || now < self.last_failure + LOCK_SECS
    }
}

/// The failure counts of console sign-ins.
#[derive(Debug, Default)]
pub struct SignInFailures {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl SignInFailures {
    /// Whether sign-ins as `name` from `client` are refused now.
    pub fn locked(&self, name: &str, client: IpAddr, now: i64) -> bool {
        self.lock()
            .get(&key(name, client))
            .is_some_and(|e| now < e.locked_until)
    }

    /// Counts a failed sign-in; returns the time the pair is locked until
    /// when this failure locked it.
    pub fn failed(&self, name: &str, client: IpAddr, now: i64) -> Option<i64> {
        let key = key(name, client);
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= CAPACITY {
            make_room(&mut entries, now);
        }
        let entry = entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
            locked_until: 0,
        });
        if !entry.live(now) {
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last_failure = now;
        if entry.failures >= LIMIT {
            // Locked; once the lock ends, the next LIMIT failures count anew.
            entry.failures = 0;
            entry.locked_until = now + LOCK_SECS;
            return Some(entry.locked_until);
        }
        None
    }

    /// A good sign-in: this pair's failures are forgotten.
    pub fn succeeded(&self, name: &str, client: IpAddr) {
        self.lock().remove(&key(name, client));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock leaves counts, never a broken
        // invariant: carry on with them.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Frees one place at least: forgets what no longer counts, and if all of
/// it still does, the unlocked pair that failed longest ago (a lock is the
/// last thing given up, so that making up names does not buy more guesses
/// cheaply: each place costs a password check).
fn make_room(entries: &mut HashMap<Key, Entry>, now: i64) {
    entries.retain(|_, e| e.live(now));
    if entries.len() < CAPACITY {
        return;
    }
    let oldest = entries
        .iter()
        .min_by_key(|(_, e)| (now < e.locked_until, e.last_failure))
        .map(|(k, _)| *k);
    if let Some(k) = oldest {
        entries.remove(&k);
    }
}

/// The pair a sign-in counts against. IPv6 clients are counted by /64, the
/// block one host usually holds, so that walking through one's own
/// addresses does not buy more guesses.
fn key(name: &str, client: IpAddr) -> Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    let network = match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    };
    (hash, network)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn failures_lock_one_name_from_one_address_only() {
        let f = SignInFailures::default();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for n in 1..LIMIT {
            assert_eq!(f.failed("alice", a, 100), None, "failure {n}");
            assert!(!f.locked("alice", a, 100));
        }
        assert_eq!(f.failed("alice", a, 100), Some(100 + LOCK_SECS));
        assert!(f.locked("alice", a, 101));
        assert!(!f.locked("alice", b, 101), "another address");
        assert!(!f.locked("bob", a, 101), "another name");
        assert!(!f.locked("alice", a, 100 + LOCK_SECS), "the lock ends");
        // A good sign-in from elsewhere does not lift the stranger's lock.
        f.succeeded("alice", b);
        assert!(f.locked("alice", a, 101));
    }

    #[test]
    fn failures_far_apart_are_not_in_a_row() {
        let f = SignInFailures::default();
        let a = ip("192.0.2.1");
        for n in 0..i64::from(LIMIT) * 2 {
            assert_eq!(f.failed("alice", a, n * (LOCK_SECS + 1)), None);
        }
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let f = SignInFailures::default();
        for n in 0..LIMIT {
            f.failed("alice", ip(&format!("2001:db8::{n}")), 100);
        }
        assert!(f.locked("alice", ip("2001:db8::ffff"), 101));
        assert!(!f.locked("alice", ip("2001:db8:0:1::1"), 101));
        f.failed("alice", ip("::ffff:192.0.2.9"), 100);
        assert_eq!(
            key("alice", ip("::ffff:192.0.2.9")),
            key("alice", ip("192.0.2.9"))
        );
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_its_locks() {
        let f = SignInFailures::default();
        let a = ip("192.0.2.1");
        for _ in 0..LIMIT {
            f.failed("alice", a, 100);
        }
        for n in 0..CAPACITY + 100 {
            f.failed(&format!("made-up-{n}"), a, 200);
        }
        assert!(f.len() <= CAPACITY);
        assert!(f.locked("alice", a, 300), "a lock outlives made-up names");
    }
}
