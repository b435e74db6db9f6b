//! The three outputs of a run: `cdc.json`, `cdc.md` and `cdc.png`.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run started, RFC 3339.
    pub started: String,
    pub machine: Machine,
    pub workload: Workload,
    pub settings: Settings,
    pub rows: Vec<RowResult>,
    pub ratios: Vec<Ratio>,
    /// The switch-pause run, or why it failed; none when not run.
    pub switches: Option<Result<crate::switches::Switches, String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    /// `/proc/loadavg` before the first row and after the last.
    pub load_before: String,
    pub load_after: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub seed: u64,
    /// Row changes (snapshot reads, inserts, updates, deletes).
    pub change_events: u64,
    /// Kafka records: change events plus tombstones, heartbeats and schema changes.
    pub records: u64,
    /// Key and value bytes of the records.
    pub bytes: u64,
    pub partitions: usize,
    pub topic_pattern: String,
    /// Whether this run loaded the topics or found them in place.
    pub loaded_now: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub batch_size: usize,
    pub max_records: u64,
    pub max_bytes: u64,
    pub max_age_ms: u64,
    pub freshness_rate_per_s: u32,
    pub freshness_seconds: u32,
    /// Throughput runs per row, fewer for a row that used up its budget.
    pub repeats: u32,
    pub row_budget_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    pub id: String,
    pub name: String,
    /// `ok`, or `not run: <why>`, or `failed: <error>`.
    pub status: String,
    /// The median of each figure over `runs`.
    pub throughput: Option<Throughput>,
    /// Every throughput run, in order.
    pub runs: Vec<Throughput>,
    pub freshness: Option<Freshness>,
    /// Why freshness is missing, when the row ran.
    pub freshness_note: Option<String>,
}

impl RowResult {
    /// A row with no figures yet.
    pub fn new(id: &str, name: &str, status: String) -> Self {
        RowResult {
            id: id.into(),
            name: name.into(),
            status,
            throughput: None,
            runs: Vec::new(),
            freshness: None,
            freshness_note: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    /// From process start until the group's committed offsets cover every record.
    pub seconds: f64,
    pub events_per_s: f64,
    pub mb_per_s: f64,
    pub cpu_seconds: f64,
    pub cpu_s_per_million: f64,
    pub peak_rss_mib: f64,
    /// How many lanes were inside a transform call, and how many writers were writing a
    /// window, on average over `seconds` (wrt rows, from their metrics). Lanes and writers
    /// run side by side, so these are not shares of one timeline.
    pub lanes_in_calls: Option<f64>,
    pub writers_busy: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Freshness {
    pub rows: u64,
    pub objects: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: String,
    pub of: String,
    pub to: String,
    /// events/s of `of` over events/s of `to`.
    pub throughput: Option<f64>,
    /// CPU-seconds per million events of `of` over those of `to`.
    pub cpu: Option<f64>,
}

/// Each figure's median over `runs` (the mean of the middle two for an even count).
pub fn median(runs: &[Throughput]) -> Option<Throughput> {
    if runs.is_empty() {
        return None;
    }
    let of = |figure: fn(&Throughput) -> f64| middle(runs.iter().map(figure).collect());
    let maybe = |figure: fn(&Throughput) -> Option<f64>| {
        Some(middle(runs.iter().filter_map(figure).collect())).filter(|v| !v.is_nan())
    };
    Some(Throughput {
        seconds: of(|t| t.seconds),
        events_per_s: of(|t| t.events_per_s),
        mb_per_s: of(|t| t.mb_per_s),
        cpu_seconds: of(|t| t.cpu_seconds),
        cpu_s_per_million: of(|t| t.cpu_s_per_million),
        peak_rss_mib: of(|t| t.peak_rss_mib),
        lanes_in_calls: maybe(|t| t.lanes_in_calls),
        writers_busy: maybe(|t| t.writers_busy),
    })
}

/// The median of `values`, NaN for none.
fn middle(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

/// The slowest and fastest run's events/s, when there was more than one.
fn spread(runs: &[Throughput]) -> String {
    let rates = runs.iter().map(|t| t.events_per_s);
    match runs.len() {
        0 => "–".into(),
        1 => "1".into(),
        n => format!(
            "{n} ({:.0}–{:.0})",
            rates.clone().fold(f64::INFINITY, f64::min),
            rates.fold(0.0, f64::max)
        ),
    }
}

/// The ratios the issue asks for, from whichever rows ran.
pub fn ratios(rows: &[RowResult]) -> Vec<Ratio> {
    let find = |id: &str| rows.iter().find(|r| r.id == id).and_then(|r| r.throughput);
    [
        ("WASM cost", "rust-guest", "native"),
        ("distance to the limit", "rust-guest", "raw"),
        ("against the peer", "rust-guest", "peer"),
        ("JS guest against Rust guest", "js-guest", "rust-guest"),
    ]
    .into_iter()
    .map(|(name, of, to)| {
        let (a, b) = (find(of), find(to));
        Ratio {
            name: name.into(),
            of: of.into(),
            to: to.into(),
            throughput: a.zip(b).map(|(a, b)| a.events_per_s / b.events_per_s),
            cpu: a
                .zip(b)
                .map(|(a, b)| a.cpu_s_per_million / b.cpu_s_per_million),
        }
    })
    .collect()
}

fn num(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

pub fn markdown(report: &Report) -> String {
    let w = &report.workload;
    let s = &report.settings;
    let mut out = format!(
        "# wrt CDC benchmark\n\n\
         Run {}, {} CPUs, load average before `{}`, after `{}`.\n\n\
         Workload: seed {}, {} change events in {} Kafka records ({:.1} MB of keys and values) \
         over {} partitions (`{}`).\n\n\
         Same flush rules in every row: {} events per transform call, windows of {} source \
         records or {} MiB or {} ms per partition, gzip JSON Lines, offsets committed after the \
         objects are durable. Throughput figures are medians of up to {} runs per row (a row \
         is not repeated once its runs took {} s); the runs column gives their count and the \
         slowest and fastest events/s. Freshness: one more run per row at {} events/s for {} s.\n\n\
         | # | row | status | events/s | runs (min–max) | MB/s | CPU-s per M events | peak RSS MiB | freshness p50 ms | p99 ms |\n\
         |---|---|---|---:|---|---:|---:|---:|---:|---:|\n",
        report.started,
        report.machine.cpus,
        report.machine.load_before,
        report.machine.load_after,
        w.seed,
        w.change_events,
        w.records,
        w.bytes as f64 / 1e6,
        w.partitions,
        w.topic_pattern,
        s.batch_size,
        s.max_records,
        s.max_bytes >> 20,
        s.max_age_ms,
        s.repeats,
        s.row_budget_seconds,
        s.freshness_rate_per_s,
        s.freshness_seconds,
    );
    for (i, row) in report.rows.iter().enumerate() {
        let t = row.throughput;
        let f = row.freshness;
        let fresh = |v: Option<f64>| match (&row.freshness_note, v) {
            (_, Some(v)) => format!("{v:.0}"),
            (Some(note), None) => format!("n/a ({note})"),
            (None, None) => "–".into(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            row.name,
            row.status,
            num(t.map(|t| t.events_per_s), 0),
            spread(&row.runs),
            num(t.map(|t| t.mb_per_s), 1),
            num(t.map(|t| t.cpu_s_per_million), 1),
            num(t.map(|t| t.peak_rss_mib), 0),
            fresh(f.map(|f| f.p50_ms)),
            fresh(f.map(|f| f.p99_ms)),
        );
    }
    out += "\nWhere a wrt row's time went (medians, from its own metrics): the lanes inside a \
            transform call and the writers writing a closed window (encoding, S3 round trips), \
            on average over the run. Lanes and writers work side by side, so the two add up to \
            more than one timeline: 1.5 lanes in calls means that, on average, one and a half \
            lanes were waiting on the guest.\n\n\
            | # | row | lanes in transform calls | writers writing |\n|---|---|---:|---:|\n";
    for (i, row) in report.rows.iter().enumerate() {
        let Some((calls, writes)) = row
            .throughput
            .and_then(|t| t.lanes_in_calls.zip(t.writers_busy))
        else {
            continue;
        };
        out += &format!("| {} | {} | {calls:.2} | {writes:.2} |\n", i + 1, row.name);
    }
    out += "\n| ratio | rows | events/s | CPU per event |\n|---|---|---:|---:|\n";
    for r in &report.ratios {
        out += &format!(
            "| {} | {} / {} | {} | {} |\n",
            r.name,
            r.of,
            r.to,
            num(r.throughput, 3),
            num(r.cpu, 3)
        );
    }
    match &report.switches {
        None => {}
        Some(Err(e)) => out += &format!("\nSwitch pauses: {e}\n"),
        Some(Ok(s)) => {
            let all: Vec<String> = s.pauses_ms.iter().map(|p| format!("{p:.1}")).collect();
            out += &format!(
                "\nSwitch pauses (`wrt run --watch` with the `tagger` guest over the same \
                 workload, its file replaced by the other version {} times, each once the \
                 last had happened; {} while records were left to commit): the host's own \
                 figure, how long its lanes stood still at the batch boundary. p50 {:.1} ms, \
                 p99 {:.1} ms (nearest rank), max {:.1} ms. Read back: {} objects, {} rows (one \
                 per change event), each object holding only the version its key names, no \
                 window written by both. All pauses, in order, ms: {}.\n",
                s.switches,
                s.under_load,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.objects,
                s.rows,
                all.join(", ")
            );
        }
    }
    out
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// A bar chart of events/s per row, each bar labelled with its value.
pub fn chart(report: &Report, path: &Path) -> anyhow::Result<()> {
    let font = std::fs::read(FONT)
        .with_context(|| format!("{FONT} (Debian package fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))?;
    let rows: Vec<(&str, f64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.throughput.map_or(0.0, |t| t.events_per_s),
            )
        })
        .collect();
    let top = rows.iter().map(|r| r.1).fold(1.0, f64::max) * 1.15;
    let root = BitMapBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "wrt CDC benchmark: {} records, Kafka -> transform -> S3 (median of runs)",
                report.workload.records
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0..rows.len(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() + 1)
        .x_label_formatter(&|i| {
            rows.get(*i)
                .map_or(String::new(), |r| format!("{}. {}", i + 1, short(r.0)))
        })
        .y_desc("source records per second")
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
        let color = Palette99::pick(i).filled();
        Rectangle::new([(i, 0.0), (i + 1, *v)], color)
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
        let label = if *v > 0.0 {
            format!("{v:.0}/s")
        } else {
            "not run".into()
        };
        Text::new(label, (i, v + top * 0.02), ("sans-serif", 16))
    }))?;
    root.present()?;
    Ok(())
}

/// The row name up to its first parenthesis, to fit under a bar.
fn short(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(events_per_s: f64) -> Throughput {
        Throughput {
            seconds: 1.0,
            events_per_s,
            mb_per_s: 1.0,
            cpu_seconds: 1.0,
            cpu_s_per_million: 1e6 / events_per_s,
            peak_rss_mib: 10.0,
            lanes_in_calls: Some(0.25),
            writers_busy: Some(0.5),
        }
    }

    fn row(id: &str, events_per_s: Option<f64>) -> RowResult {
        RowResult {
            id: id.into(),
            name: format!("{id} (detail)"),
            status: if events_per_s.is_some() {
                "ok".into()
            } else {
                "not run: no JS guest given".into()
            },
            throughput: events_per_s.map(sample),
            runs: events_per_s.map(sample).into_iter().collect(),
            freshness: None,
            freshness_note: None,
        }
    }

    fn report() -> Report {
        let rows = vec![
            row("raw", Some(400.0)),
            row("native", Some(200.0)),
            row("rust-guest", Some(100.0)),
            row("js-guest", None),
            row("peer", Some(50.0)),
        ];
        Report {
            started: "2026-11-25T01:00:00Z".into(),
            machine: Machine {
                cpus: 2,
                load_before: "0.1".into(),
                load_after: "0.2".into(),
            },
            workload: Workload {
                seed: 1,
                change_events: 10,
                records: 12,
                bytes: 1000,
                partitions: 9,
                topic_pattern: "^x\\..*".into(),
                loaded_now: false,
            },
            settings: Settings {
                batch_size: 256,
                max_records: 5000,
                max_bytes: 64 << 20,
                max_age_ms: 1_000,
                freshness_rate_per_s: 1000,
                freshness_seconds: 20,
                repeats: 3,
                row_budget_seconds: 900,
            },
            ratios: ratios(&rows),
            rows,
            switches: Some(Ok(crate::switches::Switches {
                switches: 3,
                under_load: 2,
                p50_ms: 4.0,
                p99_ms: 9.0,
                max_ms: 9.0,
                objects: 7,
                rows: 10,
                pauses_ms: vec![4.0, 9.0, 1.5],
            })),
        }
    }

    #[test]
    fn ratios_divide_the_rows_the_issue_names() {
        let r = report();
        let by_name = |n: &str| r.ratios.iter().find(|x| x.name == n).unwrap().clone();
        assert_eq!(by_name("WASM cost").throughput, Some(0.5));
        assert_eq!(by_name("WASM cost").cpu, Some(2.0));
        assert_eq!(by_name("distance to the limit").throughput, Some(0.25));
        assert_eq!(by_name("against the peer").throughput, Some(2.0));
        assert_eq!(by_name("JS guest against Rust guest").throughput, None);
    }

    #[test]
    fn markdown_shows_every_row_and_says_why_one_did_not_run() {
        let md = markdown(&report());
        assert!(
            md.contains("| 3 | rust-guest (detail) | ok | 100 | 1 | 1.0 | 10000.0 | 10 | – | – |")
        );
        assert!(md.contains("| 4 | js-guest (detail) | not run: no JS guest given | – | – |"));
        assert!(md.contains("| WASM cost | rust-guest / native | 0.500 | 2.000 |"));
        assert!(md.contains("| 3 | rust-guest (detail) | 0.25 | 0.50 |"));
        assert!(!md.contains("| 4 | js-guest (detail) | 2"));
        assert!(
            md.contains("p50 4.0 ms, p99 9.0 ms (nearest rank), max 9.0 ms"),
            "{md}"
        );
        assert!(md.contains("in order, ms: 4.0, 9.0, 1.5."), "{md}");
    }

    #[test]
    fn medians_take_each_figure_on_its_own() {
        let runs = [sample(100.0), sample(300.0), sample(200.0)];
        let m = median(&runs).unwrap();
        assert_eq!(m.events_per_s, 200.0);
        assert_eq!(m.cpu_s_per_million, 1e6 / 200.0);
        assert_eq!(median(&runs[..2]).unwrap().events_per_s, 200.0);
        assert!(median(&[]).is_none());
        assert_eq!(spread(&runs), "3 (100–300)");
    }

    #[test]
    fn chart_is_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        chart(&report(), &path).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
    }
}
