//! The mutation engine: a corpus, a seeded random number generator, byte
//! and structure-aware mutations, and a loop that runs a target under
//! `catch_unwind`, times each execution and saves what panics or is slow.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// How a target's input is shaped, which picks the structure-aware mutations.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Raw bytes (DER, DNS wire format).
    Binary,
    /// A JSON document.
    Json,
    /// A flattened JWS (JSON whose strings are base64url segments).
    Jws,
    /// Text (identifiers, TOML).
    Text,
    /// A DNS message (wire format).
    Dns,
}

/// One fuzz target: a function of bytes that must neither panic nor hang.
/// It returns a short description of the outcome (which error, or which
/// success), used as feedback: an input with an unseen outcome joins the
/// corpus.
pub struct Target {
    pub shape: Shape,
    pub max_len: usize,
    /// Tokens worth splicing in for this input language.
    pub dictionary: &'static [&'static [u8]],
    pub run: fn(&[u8]) -> String,
}

pub struct Budget {
    pub execs: Option<u64>,
    pub time: Option<Duration>,
}

#[derive(Default)]
pub struct Stats {
    pub execs: u64,
    pub crashes: u64,
    pub slow: u64,
    pub elapsed: Duration,
    pub slowest: Duration,
    pub corpus: usize,
    pub outcomes: usize,
    failures: Vec<String>,
}

impl Stats {
    pub fn line(&self, name: &str) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "fuzz {name}: {} executions in {:.0} s ({:.0} execs/s), crashes {}, slow {}, slowest {} ms, outcomes {}, corpus {}",
            self.execs,
            secs,
            self.execs as f64 / secs,
            self.crashes,
            self.slow,
            self.slowest.as_millis(),
            self.outcomes,
            self.corpus,
        )
    }

    pub fn first_failure(&self) -> String {
        self.failures.first().cloned().unwrap_or_default()
    }
}

/// FNV-1a, for seeds and crash file names.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: small, seeded, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Replays every file of `dir` (crashes found once, kept as regressions);
/// panics, naming the file, if one still fails.
pub fn replay_regressions(target: &Target, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let input = std::fs::read(&path).expect("a readable regression input");
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        assert!(
            outcome.is_ok(),
            "regression {} panics again",
            path.display()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "regression {} took {:?}",
            path.display(),
            started.elapsed()
        );
    }
}

fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    // Sorted, so a seed reproduces the same run.
    files.sort();
    let corpus: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!corpus.is_empty(), "no seeds in {}", dir.display());
    corpus
}

/// The most inputs kept in memory; beyond it new outcomes replace old ones.
const MAX_CORPUS: usize = 4096;

/// Fuzzes `target` from the seeds in `corpus_dir` until the budget is spent.
pub fn fuzz(
    target: &Target,
    corpus_dir: &Path,
    budget: Budget,
    seed: u64,
    slow_after: Duration,
    crash_dir: Option<&Path>,
) -> Stats {
    let mut rng = Rng::new(seed);
    let mut corpus = load_corpus(corpus_dir);
    let mut seen: HashSet<String> = HashSet::new();
    let mut stats = Stats::default();
    let started = Instant::now();
    let seeds = corpus.clone();
    let mut queue = seeds.into_iter();
    loop {
        if budget.execs.is_some_and(|n| stats.execs >= n)
            || budget.time.is_some_and(|t| started.elapsed() >= t)
        {
            break;
        }
        // Every seed runs as is first, then mutants of the corpus.
        let input = match queue.next() {
            Some(seed) => seed,
            None => mutate(target, &corpus, &mut rng),
        };
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let took = began.elapsed();
        stats.execs += 1;
        stats.slowest = stats.slowest.max(took);
        let failure = match &outcome {
            Err(panic) => {
                stats.crashes += 1;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(("crash", message))
            }
            Ok(_) if took > slow_after => {
                stats.slow += 1;
                Some(("slow", format!("took {took:?}")))
            }
            Ok(_) => None,
        };
        if let Some((what, message)) = failure {
            let saved = crash_dir.and_then(|dir| {
                std::fs::create_dir_all(dir).ok()?;
                let path = dir.join(format!("{what}-{:016x}", fnv(&input)));
                std::fs::write(&path, &input).ok()?;
                Some(path.display().to_string())
            });
            if stats.failures.len() < 16 {
                stats.failures.push(format!(
                    "{what}: {message}; input {:?}{}",
                    String::from_utf8_lossy(&input[..input.len().min(512)]),
                    saved.map(|p| format!(", saved to {p}")).unwrap_or_default()
                ));
            }
            continue;
        }
        if let Ok(outcome) = outcome {
            if seen.insert(outcome) {
                if corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                } else {
                    let at = rng.below(corpus.len());
                    corpus[at] = input;
                }
            }
        }
    }
    stats.elapsed = started.elapsed();
    stats.corpus = corpus.len();
    stats.outcomes = seen.len();
    stats
}

/// One to four stacked mutations of a corpus entry.
fn mutate(target: &Target, corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = corpus[rng.below(corpus.len())].clone();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let structured = match target.shape {
            Shape::Json => rng.chance(2) && mutate_json_doc(&mut data, rng, false),
            Shape::Jws => rng.chance(2) && mutate_json_doc(&mut data, rng, true),
            Shape::Dns => rng.chance(2) && mutate_dns(&mut data, rng),
            Shape::Binary | Shape::Text => false,
        };
        if !structured {
            mutate_bytes(&mut data, corpus, target.dictionary, rng);
        }
    }
    data.truncate(target.max_len);
    data
}

/// Rewrites a parsed DNS message: the question's name and type, extra
/// questions, the opcode, EDNS and its payload size. False when `data` does
/// not parse, so the caller falls back to byte mutations.
fn mutate_dns(data: &mut Vec<u8>, rng: &mut Rng) -> bool {
    use hickory_proto::op::{Edns, Message, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    const NAMES: &[&str] = &[
        "acme.hub.example.",
        "k3v9.acme.hub.example.",
        "big.acme.hub.example.",
        "loop1.acme.hub.example.",
        "out.acme.hub.example.",
        "_acme-challenge.shop.acme.hub.example.",
        "ns1.acme.hub.example.",
        "hub.example.",
        ".",
        "*.acme.hub.example.",
        "K3V9.ACME.HUB.EXAMPLE.",
        "xn--bcher-kva.acme.hub.example.",
        "example.org.",
    ];
    let Ok(mut message) = Message::from_vec(data) else {
        return false;
    };
    let name = || -> Name { Name::from_ascii(NAMES[0]).unwrap_or_default() };
    let pick_name = |rng: &mut Rng| -> Name {
        let mut text = NAMES[rng.below(NAMES.len())].to_string();
        if rng.chance(4) {
            // Long labels and many labels, up to the limits of RFC 1035 §2.3.4.
            let label = "a".repeat(1 + rng.below(63));
            for _ in 0..rng.below(8) {
                text = format!("{label}.{text}");
            }
        }
        Name::from_ascii(&text).unwrap_or_else(|_| name())
    };
    match rng.below(6) {
        0 => {
            let qtype = RecordType::from(rng.next() as u16 % 300);
            let q = Query::query(pick_name(rng), qtype);
            message.queries = vec![q];
        }
        1 => {
            let qtype = [
                RecordType::TXT,
                RecordType::A,
                RecordType::AAAA,
                RecordType::CAA,
                RecordType::SOA,
                RecordType::NS,
                RecordType::CNAME,
                RecordType::ANY,
            ][rng.below(8)];
            message.add_query(Query::query(pick_name(rng), qtype));
        }
        2 => {
            message.metadata.op_code = [
                OpCode::Query,
                OpCode::Notify,
                OpCode::Update,
                OpCode::Status,
            ][rng.below(4)];
        }
        3 => {
            let mut edns = Edns::new();
            edns.set_max_payload([0u16, 1, 511, 512, 1232, 4096, 65535][rng.below(7)]);
            message.set_edns(edns);
        }
        4 => message.queries.clear(),
        _ => {
            if let Some(q) = message.queries.first_mut() {
                *q = Query::query(pick_name(rng), q.query_type());
            }
        }
    }
    match message.to_vec() {
        Ok(bytes) => {
            *data = bytes;
            true
        }
        Err(_) => false,
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x3f, 0x40, 0xc0, b'"', b'\\', b'.', b'*', b'-', b'%', b'\n',
];

fn mutate_bytes(data: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]], rng: &mut Rng) {
    let len = data.len();
    match rng.below(11) {
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = rng.next() as u8;
        }
        2 => {
            let at = rng.below(len + 1);
            data.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            data.drain(at..at + n);
        }
        4 if len > 0 => {
            // Duplicate a range: repeated labels, members, records.
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let piece = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, piece);
        }
        5 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())];
            let at = rng.below(len + 1);
            data.splice(at..at, token.iter().copied());
        }
        6 if !dictionary.is_empty() && len > 0 => {
            let token = dictionary[rng.below(dictionary.len())];
            let at = rng.below(len);
            let end = (at + token.len()).min(len);
            data.splice(at..end, token.iter().copied());
        }
        7 if !corpus.is_empty() => {
            // Splice: the head of this input with the tail of another.
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        8 if len >= 2 => {
            // Interesting 16-bit values: lengths, counts, DNS pointers.
            let at = rng.below(len - 1);
            let value: u16 = [0, 1, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0xc00c][rng.below(8)];
            data[at..at + 2].copy_from_slice(&value.to_be_bytes());
        }
        9 if len > 0 => {
            // Repeat a byte many times: long labels, deep nesting.
            let at = rng.below(len);
            let n = 1 + rng.below(300);
            let byte = data[at];
            data.splice(at..at, std::iter::repeat_n(byte, n));
        }
        _ if len > 0 => {
            let at = rng.below(len);
            data[at] = data[at].wrapping_add(1 + rng.below(3) as u8);
        }
        _ => data.push(rng.next() as u8),
    }
}

/// Mutates one value inside a JSON document, re-encoding base64url strings
/// (JWS segments) around the mutation when `jws`. False when `data` is not
/// JSON, so the caller falls back to byte mutations.
fn mutate_json_doc(data: &mut Vec<u8>, rng: &mut Rng, jws: bool) -> bool {
    let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    mutate_value(&mut value, rng, jws, 0);
    match serde_json::to_vec(&value) {
        Ok(bytes) => {
            *data = bytes;
            true
        }
        Err(_) => false,
    }
}

fn mutate_value(value: &mut Value, rng: &mut Rng, jws: bool, depth: usize) {
    // Descend into a child most of the time, so deep members get mutated.
    let children = match value {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if children > 0 && depth < 8 && !rng.chance(4) {
        let pick = rng.below(children);
        match value {
            Value::Object(map) => {
                if let Some((_, child)) = map.iter_mut().nth(pick) {
                    mutate_value(child, rng, jws, depth + 1);
                }
            }
            Value::Array(items) => mutate_value(&mut items[pick], rng, jws, depth + 1),
            _ => {}
        }
        return;
    }
    match value {
        Value::String(s) => {
            let decoded = if jws && !rng.chance(4) {
                URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()
            } else {
                None
            };
            if let Some(decoded) = decoded {
                // A base64url segment: mutate what it encodes, as JSON when
                // it is JSON (the protected header, the payload).
                let mut inner = decoded;
                if rng.chance(3) || !mutate_json_doc(&mut inner, rng, true) {
                    mutate_bytes(&mut inner, &[], JSON_TOKENS, rng);
                }
                *s = URL_SAFE_NO_PAD.encode(&inner);
            } else {
                let mut bytes = s.clone().into_bytes();
                mutate_bytes(&mut bytes, &[], JSON_TOKENS, rng);
                *s = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        Value::Object(map) => match rng.below(3) {
            0 if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.below(map.len()))
                    .cloned()
                    .unwrap_or_default();
                map.remove(&key);
            }
            1 => {
                let key = JSON_KEYS[rng.below(JSON_KEYS.len())].to_string();
                map.insert(key, random_value(rng));
            }
            _ => *value = random_value(rng),
        },
        Value::Array(items) => match rng.below(3) {
            0 if !items.is_empty() => {
                let copy = items[rng.below(items.len())].clone();
                items.push(copy);
            }
            1 if !items.is_empty() => {
                items.remove(rng.below(items.len()));
            }
            _ => items.push(random_value(rng)),
        },
        _ => *value = random_value(rng),
    }
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => Value::from(rng.next() as i64),
        3 => Value::from([0i64, -1, 1, 65535, 65536, i64::MAX, i64::MIN][rng.below(7)]),
        4 => Value::from(1.5e300),
        5 => Value::String(String::new()),
        6 => Value::String("é.xn--bcher-kva.例え.テスト".into()),
        7 => Value::Array(vec![Value::String("x".into())]),
        8 => Value::Object(serde_json::Map::new()),
        _ => Value::String("A".repeat(rng.below(5000))),
    }
}

/// Member names the hub's JSON documents use, to add where they do not belong.
const JSON_KEYS: &[&str] = &[
    "alg",
    "kid",
    "jwk",
    "url",
    "nonce",
    "crit",
    "b64",
    "kty",
    "crv",
    "x",
    "y",
    "n",
    "e",
    "d",
    "protected",
    "payload",
    "signature",
    "header",
    "signatures",
    "identifiers",
    "type",
    "value",
    "externalAccountBinding",
    "csr",
    "name",
    "zone",
    "allowed_identifiers",
    "validation",
    "expires_at",
    "status",
    "scope",
    "role",
    "reason",
    "config",
    "secret",
    "kind",
];

pub const JSON_TOKENS: &[&[u8]] = &[
    "{".as_bytes(),
    "}".as_bytes(),
    "[".as_bytes(),
    "]".as_bytes(),
    ":".as_bytes(),
    ",".as_bytes(),
    "\"".as_bytes(),
    "null".as_bytes(),
    "true".as_bytes(),
    "false".as_bytes(),
    "-0".as_bytes(),
    "1e999".as_bytes(),
    "0.0".as_bytes(),
    "18446744073709551616".as_bytes(),
    "\\u0000".as_bytes(),
    "\\ud800".as_bytes(),
    "\\\"".as_bytes(),
    "[[[[[[[[[[[[[[[[".as_bytes(),
    "{\"a\":{\"a\":".as_bytes(),
    "\"alg\":\"none\"".as_bytes(),
    "\"alg\":\"HS256\"".as_bytes(),
    "\"kty\":\"EC\"".as_bytes(),
    "\"kty\":\"RSA\"".as_bytes(),
    "\"kty\":\"OKP\"".as_bytes(),
];
