//! Response-rate limiting for DNS over UDP, per client subnet (IPv4 /24,
//! IPv6 /56), as BIND's RRL does: UDP source addresses can be forged, so an
//! unlimited server reflects whatever a spoofer asks at a victim. Each
//! subnet has a token bucket; beyond it every [`SLIP`]th answer goes out
//! truncated (TC, no larger than the question, so a real resolver retries
//! over TCP, which cannot be spoofed) and the others are dropped. The table
//! never holds more than [`MAX_SUBNETS`] entries. It never touches TCP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Of the answers over its limit, a subnet gets every `SLIP`th one
/// truncated and the rest dropped (BIND's default `slip 2`).
const SLIP: u32 = 2;

/// Most subnets tracked at once (about 40 bytes each).
const MAX_SUBNETS: usize = 16_384;

/// What to do with one UDP query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: the full answer.
    Answer,
    /// Over it: a truncated answer, so the client retries over TCP.
    Slip,
    /// Over it: nothing.
    Drop,
}

/// The token buckets of the subnets seen lately.
pub struct ResponseRateLimiter {
    /// Tokens a second, and the bucket's size (a second's worth).
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// Answers refused since the last slip.
    refused: u32,
}

impl ResponseRateLimiter {
    /// `per_second` answers a second per subnet, in bursts of as many;
    /// `None` when 0 (no limit).
    pub fn new(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            rate: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token from `client`'s subnet, if it has one.
    pub fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        // A poisoned lock only means a panic mid-update of plain counters.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let key = subnet(client);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_SUBNETS {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.rate,
            updated: now,
            refused: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Answer;
        }
        bucket.refused += 1;
        if bucket.refused >= SLIP {
            bucket.refused = 0;
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Makes room: first forgets the subnets whose bucket has refilled (a
    /// new entry would be the same), then, if many subnets are busy at
    /// once, the least recently seen half, so that each eviction buys room
    /// for many inserts.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let refill = std::time::Duration::from_secs(1);
        buckets.retain(|_, b| now.saturating_duration_since(b.updated) < refill);
        if buckets.len() < MAX_SUBNETS * 3 / 4 {
            return;
        }
        let mut seen: Vec<Instant> = buckets.values().map(|b| b.updated).collect();
        let middle = seen.len() / 2;
        let (_, median, _) = seen.select_nth_unstable(middle);
        let median = *median;
        buckets.retain(|_, b| b.updated > median);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// The subnet a client is counted in: its /24 (IPv4) or /56 (IPv6, the
/// smallest prefix a site commonly gets); IPv4-mapped IPv6 counts as IPv4.
pub(super) fn subnet(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 72) - 1)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn clients_are_counted_by_subnet() {
        assert_eq!(subnet(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(subnet(ip("::ffff:192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(subnet(ip("2001:db8:1:2ff:1::1")), ip("2001:db8:1:200::"));
    }

    #[test]
    fn a_subnet_gets_its_burst_then_its_rate_with_every_second_excess_slipped() {
        let limiter = ResponseRateLimiter::new(5).unwrap();
        let start = Instant::now();
        let verdicts: Vec<Verdict> = (0..9)
            .map(|i| limiter.check(ip(&format!("198.51.100.{i}")), start))
            .collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [
                Answer, Answer, Answer, Answer, Answer, Drop, Slip, Drop, Slip
            ]
        );
        assert_eq!(
            limiter.check(ip("203.0.113.1"), start),
            Answer,
            "another subnet"
        );
        // 0.2 s later one more token has come.
        let later = start + Duration::from_millis(200);
        assert_eq!(limiter.check(ip("198.51.100.1"), later), Answer);
        assert_ne!(limiter.check(ip("198.51.100.1"), later), Answer);
        assert!(ResponseRateLimiter::new(0).is_none(), "0 means no limit");
    }

    #[test]
    fn the_table_stays_bounded_under_many_subnets() {
        let limiter = ResponseRateLimiter::new(10).unwrap();
        let start = Instant::now();
        let mut at = start;
        let mut next = 0u32;
        let mut flood = |limiter: &ResponseRateLimiter, at: Instant| {
            next += 1;
            limiter.check(IpAddr::V4((next << 8).into()), at);
        };
        for _ in 0..(3 * MAX_SUBNETS) {
            at += Duration::from_micros(1);
            flood(&limiter, at);
            assert!(limiter.len() <= MAX_SUBNETS);
        }
        // A subnet under attack was seen lately, so an eviction keeps its
        // empty bucket: a flood of other subnets does not refill it.
        while limiter.len() < MAX_SUBNETS - 1 {
            at += Duration::from_micros(1);
            flood(&limiter, at);
        }
        let victim = ip("192.0.2.1");
        at += Duration::from_micros(1);
        while limiter.check(victim, at) == Verdict::Answer {}
        at += Duration::from_micros(1);
        flood(&limiter, at);
        assert!(limiter.len() < MAX_SUBNETS, "an eviction ran");
        assert_ne!(limiter.check(victim, at), Verdict::Answer);
    }
}
