//! Parquet end to end on the real local stack: the customers workload of `e2e_cdc`, with
//! `ALTER TABLE … ADD COLUMN`, `MODIFY COLUMN` (an INT and a DECIMAL widened) and
//! `DROP COLUMN` between its parts, through the router example (which keeps every value's
//! type) into MinIO as Parquet. pyarrow reads every file back (`tests/readers/`), and every
//! change must be there exactly once with its exact values and types.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;

const ALTERS: [&str; 3] = [
    "ALTER TABLE customers ADD COLUMN tier VARCHAR(16) NOT NULL DEFAULT 'bronze';\n",
    "ALTER TABLE customers MODIFY COLUMN rev BIGINT NOT NULL, \
     MODIFY COLUMN balance DECIMAL(14,2) NULL;\n",
    "ALTER TABLE customers DROP COLUMN tier;\n",
];

/// The table's four schema versions as Parquet types: whether `tier` is there, `rev`'s type
/// and `balance`'s.
const VERSIONS: [(bool, &str, &str); 4] = [
    (false, "int32", "decimal128(12, 2)"),
    (true, "int32", "decimal128(12, 2)"),
    (true, "int64", "decimal128(14, 2)"),
    (false, "int64", "decimal128(14, 2)"),
];

/// The types every version shares.
const SHARED: [(&str, &str); 9] = [
    ("id", "int32"),
    ("email", "string"),
    ("phone", "string"),
    ("created_at", "timestamp[us, tz=UTC]"),
    ("updated_at", "timestamp[us, tz=UTC]"),
    ("prefs", "string"),
    ("status", "string"),
    ("password_hash", "string"),
    ("_deleted", "bool"),
];

/// What the router makes of `id`'s row image at `rev`, column by column (its soft-delete
/// columns aside).
fn expected_row(id: i64, rev: i64) -> serde_json::Value {
    let r = image(id, rev);
    serde_json::json!({
        "id": id,
        "email": r.email,
        "full_name": r.full_name,
        "phone": r.phone,
        "balance": r.balance_cents.map(decimal),
        "created_at": rfc3339_micros(r.created_micros),
        "updated_at": r.updated_micros.map(rfc3339_micros),
        "prefs": r.prefs,
        "status": r.status,
        "rev": rev,
        "password_hash": "secret",
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn alter_table_mid_stream_lands_as_parquet_versions_pyarrow_reads_exactly() {
    let load = workload(200, 4_000, 23);
    let setup = setup("e2e_parquet", &load, |names, stack| {
        Pipeline {
            guest: "router",
            config: String::new(),
            batch: "batch-size = 256\nmax-records = 1000\nmax-age-ms = 1000\nformat = \"parquet\""
                .into(),
            ..Pipeline::default()
        }
        .toml(names, stack)
    })
    .await;
    let mut wrt = Wrt::start(&setup.config, &setup.dir.path().join("wrt.log"));
    // The streaming statements in four parts, an ALTER between each two.
    let mut script = format!("USE {};\n", setup.names.database);
    let part = load.streaming_sql.len().div_ceil(4);
    for (at, statements) in load.streaming_sql.chunks(part).enumerate() {
        if at > 0 {
            script.push_str(ALTERS[at - 1]);
        }
        script.push_str(&statements.concat());
    }
    setup.stack.sql(&script);
    let want = setup
        .wait_for(&load.expected, &mut wrt, Duration::from_secs(240))
        .await;
    let log = wrt.stop();

    let files = parquet_files(&setup.s3, &setup.names.bucket, "customers/").await;
    let mut versions = BTreeSet::new();
    let mut ids = BTreeMap::new();
    let mut rows: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
    for (key, file) in &files {
        let types = &file["types"];
        let version = VERSIONS
            .iter()
            .position(|&(tier, rev, balance)| {
                types.get("tier").is_some() == tier
                    && types["rev"] == rev
                    && types["balance"] == balance
            })
            .unwrap_or_else(|| panic!("{key}: {types} is none of the table's versions"));
        versions.insert(version);
        let id = key.rsplit('.').nth(1).unwrap().to_string();
        if let Some(before) = ids.insert(version, id.clone()) {
            assert_eq!(before, id, "{key}: one id per version");
        }
        for (column, expected) in SHARED {
            assert_eq!(types[column], expected, "{key}: {column}");
        }
        if version == 1 || version == 2 {
            assert_eq!(types["tier"], "string", "{key}");
        }
        for row in file["rows"].as_array().unwrap() {
            let id = row["id"].as_i64().unwrap();
            rows.entry(id).or_default().push(row.clone());
        }
    }
    assert_eq!(versions.len(), 4, "every version landed: {versions:?}");

    // Every change exactly once with its exact values. Rows of one window that span an
    // ALTER are in two files, so each key's rows are put in change order by `rev` (a
    // delete carries the rev of the image it deleted, and follows it).
    let mut changes = 0;
    for (id, expected) in &load.expected {
        let mut got = rows.remove(id).unwrap_or_default();
        got.sort_by_key(|r| (r["rev"].as_i64(), r["_deleted"].as_bool()));
        let got_changes: Vec<(bool, i64)> = (got.iter())
            .map(|r| (r["_deleted"].as_bool().unwrap(), r["rev"].as_i64().unwrap()))
            .collect();
        let want_changes: Vec<(bool, i64)> =
            expected.iter().map(|&(op, rev)| (op == "d", rev)).collect();
        assert_eq!(
            got_changes, want_changes,
            "id {id}: lost, doubled or out of order"
        );
        for (row, &(_, rev)) in got.iter().zip(expected) {
            let mut row = row.as_object().unwrap().clone();
            for column in ["_deleted", "_deleted_at", "_commit_time"] {
                row.remove(column);
            }
            if let Some(tier) = row.remove("tier") {
                assert_eq!(tier, "bronze", "id {id} rev {rev}");
            }
            assert_eq!(
                serde_json::Value::Object(row),
                expected_row(*id, rev),
                "id {id} rev {rev}"
            );
            changes += 1;
        }
    }
    assert!(rows.is_empty(), "rows of unknown ids: {:?}", rows.keys());
    assert_eq!(changes, want);
    println!(
        "e2e parquet: {changes} changes in {} files over {} schema versions, read back by pyarrow",
        files.len(),
        versions.len()
    );
    let lake = setup.lake().await;
    assert!(
        !lake.keys().any(|k| k.starts_with("_dead_letter/")),
        "{log}"
    );

    // The schema history: a document per version, with the statements that made it.
    let histories: Vec<&String> = (lake.keys())
        .filter(|k| k.starts_with("_wrt/schemas/customers/"))
        .collect();
    assert_eq!(histories.len(), 4, "{histories:?}");
    for (version, id) in &ids {
        let key = format!("_wrt/schemas/customers/{id}.json");
        let document: serde_json::Value = serde_json::from_str(&lake[&key].join("\n")).unwrap();
        assert_eq!(document["version"], id.as_str(), "{document:#}");
        assert_eq!(document["files"], format!("customers/**/*.{id}.parquet"));
        assert_eq!(document["source_table"], setup.names.topic());
        assert!(
            files.contains_key(document["first_file"].as_str().unwrap()),
            "{document:#}"
        );
        let ddl: Vec<String> = serde_json::from_value(document["ddl"].clone()).unwrap();
        match version {
            0 => assert!(
                ddl.iter().any(|s| s.starts_with("CREATE TABLE")),
                "the snapshot's CREATE made the first version: {document:#}"
            ),
            v => assert_eq!(ddl, [ALTERS[v - 1].trim_end_matches(";\n")], "{document:#}"),
        }
        let columns = document["columns"].as_array().unwrap();
        let has = |name: &str| columns.iter().any(|c| c["name"] == name);
        assert_eq!(has("tier"), VERSIONS[*version].0, "{document:#}");
    }
    assert_verified(&setup.config);
    setup.stack.drop_connector(&setup.names.connector);
}
