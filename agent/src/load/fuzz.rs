//! Bounded fuzzing of what reaches the agent from the network and from
//! files: the load's CSV reader and header parser, object keys, and every
//! message the agent decodes from the coordinator (the link's commands,
//! relay frames and manifests, load chunks), valid ones mutated and random
//! bytes alike. Nothing may panic, and the CSV reader must read the same
//! records however its input is cut into chunks.
//!
//! The targets are `#[ignore]`d in the ordinary run; `scripts/test` runs
//! them with a fixed budget (`FERRY_FUZZ_SECS`, seconds per target, default
//! 2). By hand, longer and from a chosen seed:
//!
//! ```sh
//! FERRY_FUZZ_SECS=600 FERRY_FUZZ_SEED=42 cargo test -p ferry-agent --lib fuzz -- --ignored --nocapture
//! ```
//!
//! A failure prints its seed and input; each crash found becomes a
//! regression test in `regressions` below.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ferry_common::pb;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::header::{detect_delimiter, parse_cell, split_header};
use super::reader::CsvStream;

/// Runs `case` on fresh random generators until the budget is spent;
/// reports the seed of a case that panics.
fn fuzz(name: &str, mut case: impl FnMut(&mut StdRng)) {
    let secs: u64 = std::env::var("FERRY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let base: u64 = std::env::var("FERRY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let seed = base.wrapping_add(n);
        let mut rng = StdRng::seed_from_u64(seed);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut rng)));
        assert!(
            run.is_ok(),
            "fuzz target {name} failed with seed {seed} (FERRY_FUZZ_SEED={seed} FERRY_FUZZ_SECS=1 reproduces it first)"
        );
        n += 1;
    }
    eprintln!("fuzz {name}: {n} cases from seed {base}");
}

/// Bytes drawn mostly from what matters to a parser, with some noise.
fn bytes_from(rng: &mut StdRng, alphabet: &[&[u8]], max_parts: usize) -> Vec<u8> {
    let parts = rng.random_range(0..=max_parts);
    let mut out = Vec::new();
    for _ in 0..parts {
        if rng.random_range(0..10) == 0 {
            out.push(rng.random());
        } else {
            out.extend_from_slice(alphabet[rng.random_range(0..alphabet.len())]);
        }
    }
    out
}

const CSV: &[&[u8]] = &[
    b"a",
    b"12",
    b",",
    b";",
    b"\"",
    b"\"\"",
    b"\n",
    b"\r\n",
    b"\r",
    b"{a,b}",
    b" ",
    b"\xc3\xa9",
    b"\xe2\x82",
    b"\xac",
    b"\xff",
    b"\x00",
    b"NULL",
    b"-1.5e3",
];

/// Every record and the outcome, feeding `data` cut at `cuts`.
fn read_all(data: &[u8], delimiter: u8, cuts: &[usize]) -> (Vec<Vec<Vec<u8>>>, String) {
    let mut csv = CsvStream::new(delimiter, 2, 0);
    let mut records = Vec::new();
    let mut on = |r: super::reader::Record<'_>| {
        records.push((0..r.len()).map(|i| r.get(i).to_vec()).collect());
        ControlFlow::Continue(())
    };
    let mut at = 0;
    for &cut in cuts.iter().chain([data.len()].iter()) {
        let cut = cut.clamp(at, data.len());
        match csv.feed(&data[at..cut], &mut on) {
            Ok(ControlFlow::Continue(())) => {}
            other => return (records, format!("{other:?}")),
        }
        at = cut;
    }
    let end = csv.finish(&mut on);
    (records, format!("{end:?}"))
}

#[test]
#[ignore = "fuzzing: scripts/test runs it with a budget"]
fn fuzz_csv_reader_reads_the_same_however_cut() {
    fuzz("csv_reader", |rng| {
        let data = bytes_from(rng, CSV, 200);
        let delimiter = if rng.random() { b',' } else { b';' };
        let mut cuts: Vec<usize> = (0..rng.random_range(0..8))
            .map(|_| rng.random_range(0..=data.len()))
            .collect();
        cuts.sort_unstable();
        let whole = read_all(&data, delimiter, &[]);
        let pieces = read_all(&data, delimiter, &cuts);
        assert_eq!(whole, pieces, "input {data:?} cut at {cuts:?}");
    });
}

const HEADER: &[&[u8]] = &[
    b"col",
    b"owner_id",
    b"::",
    b":",
    b"ref(",
    b"ref_array(",
    b")",
    b"(",
    b",",
    b";",
    b"\"",
    b"code",
    b"owners",
    b"id",
    b"delim:",
    b"lookup_col:",
    b" ",
    b"x.y",
    b"\xc3\xa9",
    b"::int",
];

#[test]
#[ignore = "fuzzing: scripts/test runs it with a budget"]
fn fuzz_header_and_mapping_parser() {
    fuzz("header", |rng| {
        let line = bytes_from(rng, HEADER, 40);
        let delimiter = detect_delimiter(&line);
        assert!(delimiter == b',' || delimiter == b';');
        for raw in split_header(&line, delimiter) {
            if let Ok(cell) = parse_cell(&raw) {
                assert!(!cell.column.is_empty(), "{raw:?} gave an empty column");
                if let Some(r) = cell.reference {
                    assert!(!r.table.is_empty() && !r.lookup.is_empty(), "{raw:?}");
                }
            }
        }
    });
}

const KEY: &[&[u8]] = &[
    b"a",
    b"obj-1",
    b"/",
    b".",
    b"..",
    b"\\",
    b"\x01",
    b"\xc3\xa9",
    b" ",
    b"%2e",
    b"~",
];

#[test]
#[ignore = "fuzzing: scripts/test runs it with a budget"]
fn fuzz_object_keys_never_leave_their_prefix() {
    fuzz("object_keys", |rng| {
        let key = String::from_utf8_lossy(&bytes_from(rng, KEY, 12)).into_owned();
        if crate::objects::check_key(&key).is_ok() {
            assert!(!key.is_empty() && !key.starts_with('/'), "{key:?}");
            for segment in key.split('/') {
                assert!(
                    !segment.is_empty() && segment != "." && segment != "..",
                    "{key:?} accepted"
                );
                assert!(
                    !segment.contains('\\') && !segment.chars().any(char::is_control),
                    "{key:?} accepted"
                );
            }
        }
    });
}

/// Valid messages of each kind the agent decodes, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let spec = pb::LoadSpec {
        load_id: "l-1".into(),
        cluster_id: "a".into(),
        database: "registry".into(),
        files: vec![pb::LoadFile {
            name: "items.csv".into(),
            table: "item".into(),
            size: 10,
            sha256: "ab".repeat(32),
            ..Default::default()
        }],
        delimiter: ";".into(),
        ..Default::default()
    };
    vec![
        pb::CoordinatorMessage::default().encode_to_vec(),
        pb::LoadCommand {
            spec: Some(spec.clone()),
            attempt: 1,
        }
        .encode_to_vec(),
        pb::SinkDown {
            msg: Some(pb::sink_down::Msg::Manifest(pb::ManifestBatch {
                generation: 1,
                entries: vec![pb::ManifestEntry {
                    key: "a/b".into(),
                    size: 5,
                    version: "v".into(),
                }],
            })),
        }
        .encode_to_vec(),
        pb::SinkDown {
            msg: Some(pb::sink_down::Msg::Chunk(pb::ObjectChunk {
                key: "a/b".into(),
                data: vec![1u8; 64].into(),
                sha256: vec![2u8; 32].into(),
                ..Default::default()
            })),
        }
        .encode_to_vec(),
        pb::LoadPullDown {
            msg: Some(pb::load_pull_down::Msg::Chunk(pb::LoadChunk {
                file: 0,
                data: b"a;b\n".to_vec().into(),
            })),
        }
        .encode_to_vec(),
    ]
}

#[test]
#[ignore = "fuzzing: scripts/test runs it with a budget"]
fn fuzz_network_messages_decode_and_validate_without_panicking() {
    let seeds = seeds();
    fuzz("network_messages", |rng| {
        let mut bytes = if rng.random() {
            seeds[rng.random_range(0..seeds.len())].clone()
        } else {
            (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
        };
        for _ in 0..rng.random_range(0..6) {
            if bytes.is_empty() {
                break;
            }
            let i = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[i] ^= 1 << rng.random_range(0..8),
                1 => bytes.truncate(i),
                _ => bytes.insert(i, rng.random()),
            }
        }
        let _ = pb::CoordinatorMessage::decode(bytes.as_slice());
        let _ = pb::SourceDown::decode(bytes.as_slice());
        let _ = pb::SinkDown::decode(bytes.as_slice());
        let _ = pb::LoadPullDown::decode(bytes.as_slice());
        if let Ok(cmd) = pb::LoadCommand::decode(bytes.as_slice())
            && let Some(spec) = &cmd.spec
            && let Ok(s) = crate::load_exec::to_load_spec(spec)
        {
            // What the load library is then given is checked before any
            // database work; it must refuse or accept, never panic.
            let _ = super::check_schemas(&s.schemas);
            let _ = super::declared_digest(&s);
        }
        if let Ok(pb::SinkDown {
            msg: Some(pb::sink_down::Msg::Manifest(batch)),
        }) = pb::SinkDown::decode(bytes.as_slice())
        {
            for e in &batch.entries {
                let _ = crate::objects::check_key(&e.key);
            }
        }
    });
}
