//! Fuzz targets for what clients and operators send the hub: JWS requests,
//! External Account Bindings, CSRs, identifiers (with IDNA), DNS messages to
//! the technical zone, admin API bodies and the config file.
//!
//! The toolchain is stable Rust, so this is an in-tree mutation fuzzer
//! (`engine.rs`) rather than cargo-fuzz: a committed seed corpus built from
//! real requests (`fuzz/corpus/<target>/`, written by `seeds.rs`), byte-level
//! and structure-aware mutations (JSON values, the base64url segments of a
//! JWS), and outcome feedback (an input that reaches a new error is kept).
//! Each target takes bytes, must not panic and must return quickly.
//!
//! `cargo test` runs every target briefly with a fixed seed, after replaying
//! the inputs of `fuzz/regressions/<target>/` (each a crash found once);
//! `fuzz/run --minutes N` runs them for longer (the `long_run` test).

mod engine;
mod seeds;
mod targets;

use std::path::PathBuf;
use std::time::Duration;

use engine::{Budget, Stats};

/// Executions per target in `cargo test`: a few seconds each in a debug build.
const BRIEF_EXECS: u64 = 3_000;

/// An execution slower than this fails the brief run: every target must
/// return within bounded time whatever it is sent. Generous, because the
/// debug build runs on a shared machine next to other tests.
const BRIEF_SLOW: Duration = Duration::from_secs(5);

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Replays the regressions, then fuzzes `name` for [`BRIEF_EXECS`]
/// executions from a seed fixed by the name, so a failure reproduces.
fn brief(name: &str) {
    let target = targets::by_name(name).expect("a known target");
    engine::replay_regressions(&target, &fuzz_dir().join("regressions").join(name));
    let seed = engine::fnv(name.as_bytes());
    let stats: Stats = engine::fuzz(
        &target,
        &fuzz_dir().join("corpus").join(name),
        Budget {
            execs: Some(BRIEF_EXECS),
            time: None,
        },
        seed,
        BRIEF_SLOW,
        None,
    );
    eprintln!("{}", stats.line(name));
    assert_eq!(stats.crashes, 0, "{name}: {}", stats.first_failure());
    assert_eq!(stats.slow, 0, "{name}: {}", stats.first_failure());
}

#[test]
fn jws_briefly() {
    brief("jws");
}

#[test]
fn eab_briefly() {
    brief("eab");
}

#[test]
fn csr_briefly() {
    brief("csr");
}

#[test]
fn csr_info_briefly() {
    brief("csr-info");
}

#[test]
fn identifier_briefly() {
    brief("identifier");
}

#[test]
fn dns_message_briefly() {
    brief("dns");
}

#[test]
fn admin_json_briefly() {
    brief("admin");
}

#[test]
fn config_briefly() {
    brief("config");
}

/// The seeds are real requests: they pass parsing and the signature and
/// MAC checks, so mutants start next to input the hub accepts, and the
/// checks behind a signature get exercised.
#[test]
fn seeds_are_accepted() {
    let accepted = |target: &str, file: &str, expect: &str| {
        let run = targets::by_name(target).expect("a known target").run;
        let input = std::fs::read(fuzz_dir().join("corpus").join(target).join(file))
            .expect("a committed seed");
        let outcome = run(&input);
        assert!(outcome.contains(expect), "{target}/{file}: {outcome}");
    };
    for file in [
        "new-account.json",
        "new-account-rsa.json",
        "new-order.json",
        "finalize.json",
        "post-as-get.json",
        "key-change.json",
        "revoke-cert.json",
    ] {
        accepted("jws", file, "verified=true");
    }
    accepted(
        "jws",
        "new-account-eab.json",
        "verified=true payload=true eab=Some(Ok(()))",
    );
    for file in ["hs256.json", "hs384.json", "hs512.json"] {
        accepted("eab", file, "valid");
    }
    for file in ["p256.der", "p384.der", "rsa.der"] {
        accepted("csr", file, "ok");
    }
    for file in ["dns.der", "ip.der", "no-cn.der", "many.der"] {
        accepted("csr-info", file, "ok");
    }
}

/// The long run behind `fuzz/run`: `ACMEHUB_FUZZ_SECONDS` per target (the
/// targets of `ACMEHUB_FUZZ_TARGETS`, comma-separated, or all), crashing
/// and slow inputs saved under `ACMEHUB_FUZZ_CRASHES` (default
/// `fuzz/crashes`). Prints one line of figures per target.
#[test]
#[ignore = "long run; use fuzz/run"]
fn long_run() {
    let seconds: u64 = std::env::var("ACMEHUB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let names: Vec<String> = match std::env::var("ACMEHUB_FUZZ_TARGETS") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|s| s.trim().to_string()).collect()
        }
        _ => targets::NAMES.iter().map(|s| s.to_string()).collect(),
    };
    let crash_dir = std::env::var("ACMEHUB_FUZZ_CRASHES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| fuzz_dir().join("crashes"));
    let seed = std::env::var("ACMEHUB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    // Panics are counted and their inputs saved; their messages would only
    // flood the output.
    std::panic::set_hook(Box::new(|_| {}));
    // One thread per target: `fuzz/run` pins the process to one core, so
    // the targets share it instead of each taking one.
    let threads: Vec<_> = names
        .iter()
        .map(|name| {
            let Some(target) = targets::by_name(name) else {
                panic!(
                    "unknown target {name:?}; known: {}",
                    targets::NAMES.join(", ")
                );
            };
            let name = name.clone();
            let crash_dir = crash_dir.join(&name);
            std::thread::spawn(move || {
                engine::replay_regressions(&target, &fuzz_dir().join("regressions").join(&name));
                let stats = engine::fuzz(
                    &target,
                    &fuzz_dir().join("corpus").join(&name),
                    Budget {
                        execs: None,
                        time: Some(Duration::from_secs(seconds)),
                    },
                    seed ^ engine::fnv(name.as_bytes()),
                    Duration::from_secs(2),
                    Some(&crash_dir),
                );
                println!("{}", stats.line(&name));
                stats.crashes + stats.slow
            })
        })
        .collect();
    let failed: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("a fuzz thread ends"))
        .sum();
    let _ = std::panic::take_hook();
    assert_eq!(
        failed,
        0,
        "crashing or slow inputs saved under {}",
        crash_dir.display()
    );
}

/// Found by the `dns` target (fuzz/regressions/dns/formerr-*): a UDP query
/// with several long questions got a FORMERR that echoed them all, over the
/// 512 bytes a UDP answer without EDNS may take (RFC 1035 §4.2.1); setting TC
/// cannot help, as truncation keeps the question section. A resolver drops
/// such an answer; the server must not send it.
#[test]
fn dns_formerr_for_many_questions_fits_in_udp() {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    let label = "a".repeat(60);
    let mut query = Message::query();
    for i in 0..4 {
        let name = format!("{label}.{label}{i}.acme.hub.example.");
        query.add_query(Query::query(
            Name::from_ascii(&name).expect("a name"),
            RecordType::TXT,
        ));
    }
    let request = query.to_vec().expect("encodes");
    assert!(request.len() > 512);
    let answer = targets::dns_server()
        .answer_bytes(&request, false)
        .expect("an answer");
    assert!(answer.len() <= 512, "a {}-byte UDP answer", answer.len());
    let answer = Message::from_vec(&answer).expect("the answer parses");
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
}
