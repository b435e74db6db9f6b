//! Property tests of decoding on stable Rust: real envelopes mutated byte by byte and value by
//! value, and raw bytes, never panic either decoder; each gives what the reference gives (a
//! change event, or the same error, never with an empty message).
//!
//! Each property runs proptest's 256 cases by default; `PROPTEST_CASES=200000` for a long run.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use fastrand::Rng;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value as Json, json};

use super::super::{DecodeError, decode};
use super::Decoder;
use super::tests::{check, mutate, record};
use crate::model::KafkaRecord;

/// Real envelopes to mutate: the fixtures, the `pii-mask` example's events and a slice of the
/// sample workload (snapshot, streaming, a schema change, heartbeats, DDL, tombstones).
static SEEDS: LazyLock<Vec<KafkaRecord>> = LazyLock::new(|| {
    let dir = env!("CARGO_MANIFEST_DIR");
    let read = |path: String| std::fs::read_to_string(path).unwrap();
    let mut seeds = Vec::new();
    for (topic, name) in [
        (
            "mysql-server-1.inventory.customers",
            "customers-create.json",
        ),
        ("mysql-server-1", "schema-change.json"),
    ] {
        let pretty = read(format!("{dir}/tests/fixtures/debezium/{name}"));
        let compact = serde_json::from_str::<Json>(&pretty).unwrap().to_string();
        seeds.push(record(topic, None, Some(&pretty)));
        seeds.push(record(topic, None, Some(&compact)));
    }
    let events = read(format!(
        "{dir}/../guest-examples/pii-mask/tests/events.jsonl"
    ));
    // Kafka records with embedded key and value, a bare envelope and a broken line.
    for line in events.lines() {
        let embedded = |v: &Json| (!v.is_null()).then(|| v.to_string());
        seeds.push(match serde_json::from_str::<Json>(line) {
            Ok(fields) if fields.get("topic").is_some() => record(
                fields["topic"].as_str().unwrap(),
                embedded(&fields["key"]).as_deref(),
                embedded(&fields["value"]).as_deref(),
            ),
            _ => record("shop.shop.customers", None, Some(line)),
        });
    }
    seeds.extend(crate::sample::workload(3, 400).into_iter().step_by(7));
    seeds
});

/// One change to a JSON document, at the node `at` picks among all of them or, with
/// `in_payload`, among the `payload`'s (a schema has most of a message's nodes).
#[derive(Debug, Clone)]
struct JsonEdit {
    at: Index,
    in_payload: bool,
    change: Change,
}

#[derive(Debug, Clone)]
enum Change {
    Replace(Json),
    /// Removes the node from its object or array.
    Drop,
}

/// Values of every JSON type, and strings a decoder gives meaning to.
fn shallow_json() -> impl Strategy<Value = Json> {
    const WORDS: &[&str] = &[
        "",
        "c",
        "u",
        "d",
        "r",
        "t",
        "x",
        "struct",
        "int64",
        "int32",
        "string",
        "bytes",
        "boolean",
        "float64",
        "array",
        "map",
        "true",
        "false",
        "AAAA",
        "=",
        "1.5",
        "io.debezium.time.Timestamp",
        "io.debezium.time.ZonedTimestamp",
        "org.apache.kafka.connect.data.Decimal",
        "io.debezium.data.VariableScaleDecimal",
        "2024-05-01T00:00:00Z",
        "payload",
        "schema",
    ];
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        prop::sample::select(WORDS).prop_map(Json::from),
        prop::collection::vec(any::<char>(), 0..8).prop_map(|c| Json::from(String::from_iter(c))),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "x", null, {"a": true}])),
        Just(json!({"type": "struct", "fields": [], "field": "after"})),
    ]
}

/// [`shallow_json`], or arrays nested around serde_json's limit of 128.
fn any_json() -> impl Strategy<Value = Json> {
    prop_oneof![
        9 => shallow_json(),
        1 => (120_usize..136).prop_map(|depth| (0..depth).fold(json!(1), |v, _| json!([v]))),
    ]
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let change = prop_oneof![3 => any_json().prop_map(Change::Replace), 1 => Just(Change::Drop)];
    (any::<Index>(), any::<bool>(), change).prop_map(|(at, in_payload, change)| JsonEdit {
        at,
        in_payload,
        change,
    })
}

/// Every node's JSON pointer, children first.
fn pointers(value: &Json, at: String, all: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), all);
            }
        }
        Json::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), all);
            }
        }
        _ => {}
    }
    all.push(at);
}

/// Applies `edit` if `bytes` are JSON; other bytes stay as they are.
fn edit_json(bytes: &mut Vec<u8>, edit: &JsonEdit) {
    let Ok(mut doc) = serde_json::from_slice::<Json>(bytes) else {
        return;
    };
    let mut all = Vec::new();
    pointers(&doc, String::new(), &mut all);
    if edit.in_payload && all.iter().any(|p| p.starts_with("/payload/")) {
        all.retain(|p| p.starts_with("/payload/"));
    }
    let pointer: &String = edit.at.get(&all);
    match &edit.change {
        Change::Replace(value) => {
            *doc.pointer_mut(pointer).expect("a pointer of the document") = value.clone();
        }
        Change::Drop => {
            let Some(split) = pointer.rfind('/') else {
                return;
            };
            let (parent, key) = (&pointer[..split], &pointer[split + 1..]);
            match doc.pointer_mut(parent) {
                Some(Json::Object(map)) => {
                    map.shift_remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Json::Array(items)) => {
                    items.remove(key.parse::<usize>().expect("an array index"));
                }
                _ => unreachable!("a pointer's parent holds it"),
            }
        }
    }
    *bytes = doc.to_string().into_bytes();
}

/// The record decodes as the reference decodes it, with the plan cached from `seed` first,
/// and an error says something.
fn assert_decodes(seed: &KafkaRecord, mutated: &KafkaRecord) {
    check(&mut Decoder::default(), &[seed.clone(), mutated.clone()]);
    check(&mut Decoder::default(), std::slice::from_ref(mutated));
    if let Err(error) = decode(mutated) {
        assert!(!error.to_string().trim().is_empty(), "{error:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Found failures become named regression tests instead of files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_envelopes_decode_as_the_reference_does(
        seed in prop::sample::select(SEEDS.clone()),
        in_key in prop::bool::weighted(0.2),
        edits in prop::collection::vec(json_edit(), 0..4),
        byte_seed in any::<u64>(),
        // Mostly none: most byte edits leave no JSON, which stops decoding early.
        byte_edits in prop_oneof![3 => Just(0_usize), 1 => 1_usize..4],
    ) {
        let mut mutated = seed.clone();
        let target = match (&mut mutated.key, &mut mutated.value) {
            (Some(key), _) if in_key => key,
            (_, Some(value)) => value,
            (Some(key), None) => key,
            (None, None) => return Ok(()),
        };
        for edit in &edits {
            edit_json(target, edit);
        }
        let mut rng = Rng::with_seed(byte_seed);
        for _ in 0..byte_edits {
            mutate(&mut rng, target);
        }
        assert_decodes(&seed, &mutated);
    }

    #[test]
    fn raw_bytes_decode_as_the_reference_does(
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        value in prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
    ) {
        let record = KafkaRecord { key, value, ..record("shop.shop.t", None, None) };
        assert_decodes(&record, &record);
    }

    #[test]
    fn json_token_soup_decodes_as_the_reference_does(
        tokens in prop::collection::vec(prop::sample::select(&[
            "{", "}", "[", "]", ":", ",", "null", "1", "-0", "1e999", "\"\"", "\"x\"", "\"c\"",
            "\"op\"", "\"payload\"", "\"schema\"", "\"source\"", "\"after\"", "\"before\"",
            "\"type\"", "\"struct\"", "\"fields\"", "\"field\"", "\"ddl\"", "\"databaseName\"",
            "\"ts_ms\"", "\"table\"", "\"db\"", "\"name\"", "\"connector\"",
        ][..]), 0..48),
    ) {
        let value = tokens.concat();
        let record = record("shop.shop.t", None, Some(&value));
        assert_decodes(&record, &record);
    }

    /// An `op` that is not one of Debezium's codes is reported as such, whatever else the
    /// envelope holds.
    #[test]
    fn an_unknown_op_is_named(
        seed in prop::sample::select(SEEDS.clone()),
        op in shallow_json(),
    ) {
        let Some(Ok(mut doc)) = seed.value.as_deref().map(serde_json::from_slice::<Json>) else {
            return Ok(());
        };
        let payload = match doc.get_mut("payload") {
            Some(Json::Object(payload)) => payload,
            _ => match &mut doc {
                Json::Object(payload) if payload.contains_key("op") => payload,
                _ => return Ok(()),
            },
        };
        if !payload.contains_key("op") {
            return Ok(());
        }
        payload.insert("op".into(), op.clone());
        let mutated = KafkaRecord { value: Some(doc.to_string().into_bytes()), ..seed.clone() };
        assert_decodes(&seed, &mutated);
        let message = decode(&mutated).err().map(|e| e.to_string());
        match op.as_str() {
            Some("c" | "u" | "d" | "r" | "t") => {}
            Some(code) => prop_assert_eq!(
                message,
                Some(DecodeError::BadOp { code: code.into() }.to_string())
            ),
            None if op.is_null() => prop_assert_eq!(
                message,
                Some("the Debezium message has no `op`".to_string())
            ),
            None => prop_assert!(
                message.as_deref().is_some_and(|m| m.starts_with("`op` is declared as string")),
                "{message:?}"
            ),
        }
    }
}

#[test]
fn the_seeds_hold_every_kind_of_message() {
    let kinds: BTreeSet<String> = SEEDS
        .iter()
        .map(|seed| match decode(seed) {
            Ok(decoded) => format!("{decoded:?}")
                .split('(')
                .next()
                .unwrap()
                .to_string(),
            Err(_) => "error".to_string(),
        })
        .collect();
    assert_eq!(
        Vec::from_iter(kinds),
        ["Change", "Heartbeat", "SchemaChange", "Tombstone", "error"]
    );
}
