//! The lake's schema history: `_wrt/schemas/<destination>/<version>.json`, one document per
//! source schema version a destination's Parquet files use (the version is the last part
//! of their key, `….<version>.parquet`), with the DDL statements that made it.
//!
//! A version's DDL is read from the connector's schema-change topic: the statements on its
//! table whose binlog position lies after the last change seen under another version before
//! it, and at or before the version's own first change (a snapshot's DDL shares its rows'
//! position). The topic is read beside the tables', so a statement can arrive after the
//! first window of its version: that window's document then lacks it, and the first window
//! sealed after the statement arrives, in any lane, writes the document again with it.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::model::{BinlogPosition, VersionUse};

/// DDL statements and the changes of each version, per source table (named by its Debezium
/// topic, `<server>.<database>.<table>`), and the documents this host has handed to its
/// writers.
#[derive(Debug, Default)]
pub struct SchemaHistory {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tables: HashMap<String, Table>,
    /// By key: what the document was made from, and how many statements it listed.
    documented: HashMap<String, (VersionUse, usize)>,
}

#[derive(Debug, Default)]
struct Table {
    /// In binlog order.
    ddl: Vec<(BinlogPosition, String)>,
    /// Each version's first and last change seen.
    versions: HashMap<String, (BinlogPosition, BinlogPosition)>,
}

/// A document to write.
#[derive(Debug)]
pub struct Made {
    pub key: String,
    pub body: Vec<u8>,
    /// How many statements it lists.
    pub ddl: usize,
}

/// Statements kept per table: a schema-change topic replayed from the start holds every
/// statement since the connector began, and only the recent ones make live versions.
const DDL_KEPT: usize = 256;

#[derive(Debug, Serialize)]
struct Document<'a> {
    destination: &'a str,
    version: &'a str,
    /// The version's columns as the source declares them, e.g. `decimal(10,2)`.
    columns: Vec<DocumentColumn<'a>>,
    /// A glob of the destination's files with this version.
    files: String,
    /// The first file written with it, as the writing host met it.
    first_file: &'a str,
    source_table: &'a str,
    first_change: Option<&'a BinlogPosition>,
    /// Empty when the host that wrote the document had not read the statements.
    ddl: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
struct DocumentColumn<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    declared: String,
}

/// A document's key.
pub fn key(destination: &str, version: &str) -> String {
    format!("_wrt/schemas/{destination}/{version}.json")
}

/// Whether `ours` lists more statements than the document `there`, so it replaces it.
pub fn knows_more(there: &[u8], ours: &[u8]) -> bool {
    let count = |document: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(document)
            .map_or(0, |d| d["ddl"].as_array().map_or(0, Vec::len))
    };
    count(ours) > count(there)
}

impl Table {
    /// The statements that made `version`: after the last change of another version before
    /// its first change, up to that first change.
    fn ddl_of(&self, version: &str) -> (Option<&BinlogPosition>, Vec<&str>) {
        let Some((first, _)) = self.versions.get(version) else {
            return (None, Vec::new());
        };
        let before = (self.versions.iter())
            .filter(|(id, _)| id.as_str() != version)
            .filter_map(|(_, (start, end))| match (end < first, start < first) {
                (true, _) => Some(end),
                (false, true) => Some(start),
                (false, false) => None,
            })
            .max();
        let ddl = (self.ddl.iter())
            .filter(|(at, _)| at <= first && before.is_none_or(|b| at > b))
            .map(|(_, text)| text.as_str())
            .collect();
        (Some(first), ddl)
    }
}

impl SchemaHistory {
    /// A DDL statement on `tables` (unquoted `db.table`) of `server`, at `position`.
    pub fn ddl(&self, server: &str, tables: &[String], position: &BinlogPosition, ddl: &str) {
        let mut state = self.state.lock().expect("not poisoned");
        for table in tables {
            let table = state.tables.entry(format!("{server}.{table}")).or_default();
            if table
                .ddl
                .iter()
                .any(|(at, text)| at == position && text == ddl)
            {
                continue;
            }
            let at = table.ddl.partition_point(|(at, _)| at <= position);
            table.ddl.insert(at, (position.clone(), ddl.to_string()));
            if table.ddl.len() > DDL_KEPT {
                table.ddl.remove(0);
            }
        }
    }

    /// Changes of `topic`'s table declared by `version`, from `first` to `last`.
    pub fn changes(
        &self,
        topic: &str,
        version: &str,
        first: &BinlogPosition,
        last: &BinlogPosition,
    ) {
        let mut state = self.state.lock().expect("not poisoned");
        let table = state.tables.entry(topic.to_string()).or_default();
        let span = (table.versions.entry(version.to_string()))
            .or_insert_with(|| (first.clone(), last.clone()));
        if first < &span.0 {
            span.0 = first.clone();
        }
        if last > &span.1 {
            span.1 = last.clone();
        }
    }

    /// The documents to write with a window whose files use `uses`: those not handed out
    /// yet, and any handed out that this host now knows more statements of.
    pub fn documents(&self, uses: Vec<VersionUse>) -> Vec<Made> {
        let mut state = self.state.lock().expect("not poisoned");
        let mut made = Vec::new();
        for used in uses {
            let key = key(&used.destination, &used.schema.id);
            if state.documented.contains_key(&key) {
                continue;
            }
            let document = state.make(&used);
            state.documented.insert(key, (used, document.ddl));
            made.push(document);
        }
        let known_more: Vec<VersionUse> = (state.documented.values())
            .filter(|(used, listed)| {
                (state.tables.get(&used.topic))
                    .is_some_and(|t| t.ddl_of(&used.schema.id).1.len() > *listed)
            })
            .map(|(used, _)| used.clone())
            .collect();
        for used in known_more {
            let document = state.make(&used);
            state
                .documented
                .insert(document.key.clone(), (used, document.ddl));
            made.push(document);
        }
        made
    }

    /// Documents handed out with a window that was not written (its partition moved away):
    /// the next window of their versions makes them again.
    pub fn forget(&self, keys: &[String]) {
        let mut state = self.state.lock().expect("not poisoned");
        for key in keys {
            state.documented.remove(key);
        }
    }
}

impl State {
    fn make(&self, used: &VersionUse) -> Made {
        let schema = &used.schema;
        let (first, ddl) = match self.tables.get(&used.topic) {
            Some(table) => table.ddl_of(&schema.id),
            None => (None, Vec::new()),
        };
        let count = ddl.len();
        let document = Document {
            destination: &used.destination,
            version: &schema.id,
            columns: (schema.columns.iter())
                .map(|c| DocumentColumn {
                    name: &c.name,
                    declared: c.declared.code(),
                })
                .collect(),
            files: format!("{}/**/*.{}.parquet", used.destination, schema.id),
            first_file: &used.first_file,
            source_table: &used.topic,
            first_change: first,
            ddl,
        };
        Made {
            key: key(&used.destination, &schema.id),
            body: serde_json::to_vec_pretty(&document).expect("a document serializes"),
            ddl: count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::model::{Declared, SourceColumn, SourceSchema};

    fn at(pos: u64) -> BinlogPosition {
        BinlogPosition {
            file: "mysql-bin.000003".into(),
            pos,
        }
    }

    fn version(columns: &[&str]) -> Arc<SourceSchema> {
        let columns = columns.iter().map(|name| SourceColumn {
            name: name.to_string(),
            declared: Declared::Int(32),
        });
        Arc::new(SourceSchema::new(columns.collect()))
    }

    const TOPIC: &str = "shop.shop.customers";

    fn used(schema: &Arc<SourceSchema>) -> VersionUse {
        VersionUse {
            destination: "customers".into(),
            schema: Arc::clone(schema),
            first_file: format!("customers/x.{}.parquet", schema.id),
            topic: TOPIC.into(),
        }
    }

    fn document(made: &Made) -> serde_json::Value {
        serde_json::from_slice(&made.body).unwrap()
    }

    fn ddl_of(made: &Made) -> Vec<String> {
        serde_json::from_value(document(made)["ddl"].clone()).unwrap()
    }

    /// Each version gets the statements after the changes of the version before it, up to
    /// its own first change, whatever order the topics were read in; the snapshot's CREATE
    /// shares its rows' position; a statement on another table is not listed.
    #[test]
    fn a_version_lists_the_statements_since_the_version_before_it() {
        let history = SchemaHistory::default();
        let (v1, v2) = (version(&["id"]), version(&["id", "tier"]));
        let customers = ["shop.customers".to_string()];
        history.changes(TOPIC, &v2.id, &at(300), &at(350));
        history.ddl(
            "shop",
            &customers,
            &at(100),
            "CREATE TABLE customers (id INT)",
        );
        history.changes(TOPIC, &v1.id, &at(150), &at(180));
        history.changes(TOPIC, &v1.id, &at(100), &at(120));
        // After the last change of v1: not v1's, though after its first change.
        history.ddl(
            "shop",
            &customers,
            &at(190),
            "ALTER TABLE customers ADD tier INT",
        );
        history.ddl(
            "shop",
            &customers,
            &at(160),
            "CREATE INDEX i ON customers (id)",
        );
        history.ddl(
            "shop",
            &["shop.orders".into()],
            &at(250),
            "ALTER TABLE orders ADD y INT",
        );
        history.ddl(
            "shop",
            &customers,
            &at(190),
            "ALTER TABLE customers ADD tier INT",
        );

        let made = history.documents(vec![used(&v1), used(&v2)]);
        assert_eq!(ddl_of(&made[0]), ["CREATE TABLE customers (id INT)"]);
        assert_eq!(ddl_of(&made[1]), ["ALTER TABLE customers ADD tier INT"]);
        let v2_document = document(&made[1]);
        let id = &v2.id;
        assert_eq!(
            v2_document["columns"][1],
            serde_json::json!({"name": "tier", "type": "int32"})
        );
        assert_eq!(v2_document["first_change"]["pos"], 300);
        assert_eq!(v2_document["files"], format!("customers/**/*.{id}.parquet"));
        assert_eq!(made[1].key, format!("_wrt/schemas/customers/{id}.json"));
        // Handed out once.
        assert!(history.documents(vec![used(&v1), used(&v2)]).is_empty());
    }

    /// A version whose statements arrive after its first window: that window's document
    /// lacks them, and the next window sealed after each, whatever it holds, writes it again
    /// with them, in binlog order; a forgotten document is made again.
    #[test]
    fn a_statement_read_late_is_written_with_the_next_window() {
        let history = SchemaHistory::default();
        let (v1, v2, other) = (version(&["id"]), version(&["id", "tier"]), version(&["x"]));
        history.changes(TOPIC, &v1.id, &at(100), &at(120));
        history.changes(TOPIC, &v2.id, &at(300), &at(350));
        let early = history.documents(vec![used(&v2)]);
        assert!(early[0].ddl == 0 && ddl_of(&early[0]).is_empty());

        let alter = "ALTER TABLE customers ADD tier INT";
        history.ddl("shop", &["shop.customers".into()], &at(200), alter);
        let orders = VersionUse {
            topic: "shop.shop.orders".into(),
            destination: "orders".into(),
            ..used(&other)
        };
        let late = history.documents(vec![orders]);
        assert_eq!(late.len(), 2, "{late:?}");
        let rewritten = late.iter().find(|m| m.key == early[0].key).unwrap();
        assert_eq!(ddl_of(rewritten), [alter]);
        assert!(knows_more(&early[0].body, &rewritten.body));
        assert!(!knows_more(&rewritten.body, &early[0].body));
        assert!(history.documents(Vec::new()).is_empty());

        let index = "CREATE INDEX i ON customers (id)";
        history.ddl("shop", &["shop.customers".into()], &at(150), index);
        let more = history.documents(Vec::new());
        assert_eq!(more.len(), 1);
        assert_eq!(ddl_of(&more[0]), [index, alter]);
        assert!(knows_more(&rewritten.body, &more[0].body));

        history.forget(std::slice::from_ref(&early[0].key));
        assert_eq!(history.documents(vec![used(&v2)]).len(), 1);
    }
}
