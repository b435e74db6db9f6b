//! The replay check of `wrt deploy --events` and `wrt test --check-replay`.
//!
//! A host keeps one instance across batches but replays from a fresh one, at the start of a
//! window, so a batch must give the same output whatever the instance ran before. The check
//! runs the batches on a fresh instance, again on that instance, and on another fresh
//! instance in reverse order, and names the first event and field where two passes differ.

use anyhow::bail;
use wrt::event::{OutputRecord, value_to_json};
use wrt::model::KafkaRecord;
use wrt::pipeline::decode::Decoder;
use wrt::pipeline::transform::Transform;
use wrt::pipeline::transform::sandbox::WasmTransform;
use wrt::pipeline::{self, Emit};

/// What each record became, one call per `batch_size` records, in order.
pub(super) fn run_batches(
    records: &[KafkaRecord],
    batch_size: usize,
    transform: &mut dyn Transform,
) -> Vec<Vec<Emit>> {
    let mut decoder = Decoder::default();
    records
        .chunks(batch_size)
        .flat_map(|chunk| pipeline::transform_records(chunk, &mut decoder, transform).emitted)
        .collect()
}

/// Fails when the batches give other output than `first`, what the fresh `transform` made
/// of them, on `transform` again or on a fresh instance that takes them last to first.
pub(super) fn check(
    records: &[KafkaRecord],
    batch_size: usize,
    first: &[Vec<Emit>],
    transform: &mut WasmTransform,
) -> anyhow::Result<()> {
    let again = run_batches(records, batch_size, transform);
    if let Some(difference) = first_difference(
        records,
        (first, "on a fresh instance"),
        (&again, "on the same instance again"),
    ) {
        bail!(
            "the output depends on earlier calls: {difference}. Hosts replay from a fresh \
             instance, so a replay would write other bytes; keep no state across calls that \
             changes the output (a cache that gives the same answer either way is fine)"
        );
    }

    let mut fresh = transform.fresh()?;
    let mut decoder = Decoder::default();
    let mut backwards: Vec<Vec<Vec<Emit>>> = records
        .chunks(batch_size)
        .rev()
        .map(|chunk| pipeline::transform_records(chunk, &mut decoder, &mut fresh).emitted)
        .collect();
    backwards.reverse();
    let backwards: Vec<Vec<Emit>> = backwards.into_iter().flatten().collect();
    if let Some(difference) = first_difference(
        records,
        (first, "with the batches in order"),
        (&backwards, "with the batches in reverse order"),
    ) {
        bail!(
            "the output depends on which batch an instance ran first: {difference}. Hosts \
             replay from a fresh instance at any window, so a replay would write other bytes; \
             keep no state set by one batch that changes the output of another"
        );
    }
    Ok(())
}

/// The first event whose outputs differ between two passes, and how.
fn first_difference(
    records: &[KafkaRecord],
    (a, a_pass): (&[Vec<Emit>], &str),
    (b, b_pass): (&[Vec<Emit>], &str),
) -> Option<String> {
    let (record, (a, b)) = records
        .iter()
        .zip(a.iter().zip(b))
        .find(|(_, (a, b))| a != b)?;
    let at = format!("{}/{}/{}", record.topic, record.partition, record.offset);
    let (what, a, b) = describe(a, b)?;
    Some(format!("event {at}: {what} was {a} {a_pass}, {b} {b_pass}"))
}

/// The first field that differs between two outcomes of one event, and its two values.
fn describe(a: &[Emit], b: &[Emit]) -> Option<(String, String, String)> {
    if a.len() != b.len() {
        let count = |e: &[Emit]| e.len().to_string();
        return Some(("the number of outputs".into(), count(a), count(b)));
    }
    let (n, (x, y)) = a.iter().zip(b).enumerate().find(|(_, (x, y))| x != y)?;
    let (what, x, y) = match (x, y) {
        (Emit::Output(..), Emit::Output(..)) | (Emit::SchemaChange(_), Emit::SchemaChange(_)) => {
            let (x, y) = (x.row().expect("a row"), y.row().expect("a row"));
            record_difference(&x, &y)
        }
        _ => ("the outcome".into(), outcome(x), outcome(y)),
    };
    if a.len() > 1 {
        Some((format!("output {}, {what}", n + 1), x, y))
    } else {
        Some((what, x, y))
    }
}

fn record_difference(a: &OutputRecord, b: &OutputRecord) -> (String, String, String) {
    if a.destination != b.destination {
        return (
            "the destination".into(),
            a.destination.clone(),
            b.destination.clone(),
        );
    }
    for (x, y) in a.row.iter().zip(&b.row) {
        if x.name != y.name {
            return ("a column name".into(), x.name.clone(), y.name.clone());
        }
        if x.value != y.value {
            return (
                format!("column `{}`", x.name),
                value_to_json(&x.value).to_string(),
                value_to_json(&y.value).to_string(),
            );
        }
    }
    if a.row.len() != b.row.len() {
        return (
            "the number of columns".into(),
            a.row.len().to_string(),
            b.row.len().to_string(),
        );
    }
    (
        "the partition".into(),
        format!("{:?}", a.partition),
        format!("{:?}", b.partition),
    )
}

fn outcome(emit: &Emit) -> String {
    match emit {
        Emit::Output(..) => "a row".into(),
        Emit::SchemaChange(..) => "a schema change".into(),
        Emit::DeadLetter(reason) => format!("a dead letter ({}: {})", reason.kind, reason.message),
        Emit::Tombstone => "a tombstone".into(),
        Emit::Heartbeat => "a heartbeat".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrt::event::{Column, Timestamp, Value};
    use wrt::model::Reason;

    fn record(offset: i64) -> KafkaRecord {
        KafkaRecord {
            topic: "shop.shop.orders".into(),
            partition: 1,
            offset,
            timestamp_ms: None,
            key: None,
            value: None,
        }
    }

    fn row(n: i64) -> Emit {
        let columns = vec![
            Column {
                name: "id".into(),
                value: Value::Int(7),
            },
            Column {
                name: "n".into(),
                value: Value::Int(n),
            },
        ];
        let output = OutputRecord {
            destination: "orders".into(),
            row: columns,
            partition: Vec::new(),
        };
        Emit::Output(
            output,
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
        )
    }

    fn differ(a: Vec<Emit>, b: Vec<Emit>) -> Option<String> {
        let records = [record(4), record(5)];
        let first = [vec![row(1)], a];
        let second = [vec![row(1)], b];
        first_difference(&records, (&first, "first"), (&second, "second"))
    }

    #[test]
    fn the_first_difference_names_the_event_and_the_field() {
        assert_eq!(differ(vec![row(2)], vec![row(2)]), None);
        assert_eq!(
            differ(vec![row(2)], vec![row(3)]).unwrap(),
            "event shop.shop.orders/1/5: column `n` was 2 first, 3 second"
        );
        assert_eq!(
            differ(vec![row(2), row(2)], vec![row(2), row(4)]).unwrap(),
            "event shop.shop.orders/1/5: output 2, column `n` was 2 first, 4 second"
        );
        assert_eq!(
            differ(vec![row(2)], vec![]).unwrap(),
            "event shop.shop.orders/1/5: the number of outputs was 1 first, 0 second"
        );
        let rejected = Emit::DeadLetter(Reason {
            stage: "transform",
            kind: "rejected".into(),
            message: "[odd] no twos".into(),
        });
        assert_eq!(
            differ(vec![row(2)], vec![rejected]).unwrap(),
            "event shop.shop.orders/1/5: the outcome was a row first, \
             a dead letter (rejected: [odd] no twos) second"
        );
    }
}
