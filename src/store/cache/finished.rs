//! Records this process has just finished, kept in memory for the request
//! that follows: a valid order, which no longer changes (RFC 8555 §7.1.6),
//! and an issued certificate's chain, which revocation does not change.
//!
//! Once a certificate is signed, a client asks for the order (to see it
//! `valid`) and downloads the chain, usually within milliseconds: on
//! PostgreSQL those were two of an issuance's fourteen statements, reading
//! back what this process had just written. Only the latest [`KEPT`] of
//! each are kept, each for at most [`FOR`]; anything older, or finished by
//! another replica, is read from the database as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::{CertificateIssuer, Order, OrderStatus};

/// How many of each are kept: at a thousand issuances a second, a quarter
/// of a second's worth, far more than the moment between finalize and the
/// download (a few kilobytes each).
const KEPT: usize = 256;

/// How long one is served from memory.
const FOR: Duration = Duration::from_secs(60);

/// A certificate as its download needs it.
#[derive(Debug, Clone)]
pub struct CertificateDownload {
    pub instance_id: String,
    pub account_id: String,
    pub issuer: CertificateIssuer,
    /// None until it is issued.
    pub chain_pem: Option<String>,
    /// Alternate chains from an upstream CA (relayed certificates only).
    pub alternate_chains: Vec<String>,
}

/// The latest valid orders and issued chains of this process.
#[derive(Default)]
pub(crate) struct Finished {
    orders: Mutex<Latest<Order>>,
    chains: Mutex<Latest<CertificateDownload>>,
}

impl Finished {
    /// Keeps `order` if it is valid (nothing else is final).
    pub(crate) fn order_valid(&self, order: &Order) {
        if order.status == OrderStatus::Valid {
            lock(&self.orders).put(order.id.clone(), order.clone());
        }
    }

    pub(crate) fn order(&self, id: &str) -> Option<Order> {
        lock(&self.orders).get(id)
    }

    pub(crate) fn chain_issued(&self, id: &str, chain: CertificateDownload) {
        lock(&self.chains).put(id.to_string(), chain);
    }

    pub(crate) fn chain(&self, id: &str) -> Option<CertificateDownload> {
        lock(&self.chains).get(id)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The latest [`KEPT`] values by id, oldest first out.
struct Latest<T> {
    by_id: HashMap<String, (Instant, T)>,
    order: VecDeque<String>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T: Clone> Latest<T> {
    fn put(&mut self, id: String, value: T) {
        if self
            .by_id
            .insert(id.clone(), (Instant::now(), value))
            .is_none()
        {
            self.order.push_back(id);
        }
        while self.order.len() > KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    fn get(&self, id: &str) -> Option<T> {
        self.by_id
            .get(id)
            .filter(|(at, _)| at.elapsed() < FOR)
            .map(|(_, value)| value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_are_kept() {
        let mut latest = Latest::default();
        for n in 0..KEPT + 10 {
            latest.put(n.to_string(), n);
        }
        assert_eq!(latest.get("0"), None);
        assert_eq!(latest.get("9"), None);
        assert_eq!(latest.get("10"), Some(10));
        assert_eq!(latest.get(&(KEPT + 9).to_string()), Some(KEPT + 9));
        // Put again, a value keeps one place in the line.
        latest.put("10".into(), 11);
        latest.put("new".into(), 0);
        assert_eq!(latest.get("10"), None, "10 was the oldest");
        assert_eq!(latest.order.len(), KEPT);
        assert_eq!(latest.by_id.len(), KEPT);
    }
}
