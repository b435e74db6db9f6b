//! One measured process: spawned, watched through its consumer group's committed offsets
//! (the only point where every row has made its output durable), and read from `/proc`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::load::{Topics, client_config};

/// CPU and memory of a live process, from `/proc/<pid>/stat` and `status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

pub fn proc_stats(pid: u32, ticks_per_second: f64) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_proc(&stat, &status, ticks_per_second)
}

/// `utime` and `stime` are fields 14 and 15 of `stat`, counted after the command name,
/// which is in parentheses and may itself hold spaces; `VmHWM` is the peak resident set.
fn parse_proc(stat: &str, status: &str, ticks_per_second: f64) -> anyhow::Result<ProcStats> {
    let after_name = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state), so field n is at index n - 3.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("VmHWM in /proc status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(ProcStats {
        cpu_seconds: ticks as f64 / ticks_per_second,
        peak_rss_bytes: hwm_kib * 1024,
    })
}

pub fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// Where a `wrt` row's time went, from its own metrics: seconds inside transform calls summed
/// over the lanes, and seconds writing closed windows (encoding, S3 round trips) summed over
/// the writers. Both run side by side with each other and with consumption.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeSplit {
    pub transform_seconds: f64,
    pub write_seconds: f64,
}

pub fn time_split(admin: &str) -> anyhow::Result<TimeSplit> {
    let text = ureq::get(format!("http://{admin}/metrics"))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .with_context(|| format!("reading the row's metrics from {admin}"))?;
    parse_split(&text)
}

fn parse_split(text: &str) -> anyhow::Result<TimeSplit> {
    let sum = |name: &str| -> anyhow::Result<f64> {
        let mut lines = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .peekable();
        anyhow::ensure!(lines.peek().is_some(), "no {name} in the row's metrics");
        lines
            .map(|l| {
                let value = l.rsplit(' ').next().unwrap_or_default();
                value.parse::<f64>().with_context(|| format!("{name}: {l}"))
            })
            .sum()
    };
    Ok(TimeSplit {
        transform_seconds: sum("wrt_transform_call_seconds_sum")?,
        write_seconds: sum("wrt_flush_seconds_sum")?,
    })
}

/// A row's process, its output going to `log`.
pub struct Running {
    pub child: Child,
    pub started: Instant,
}

pub fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Running> {
    let file = std::fs::File::create(log)?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    Ok(Running { child, started })
}

impl Running {
    /// Fails if the process has already ended, naming its log.
    pub fn check_alive(&mut self, log: &Path) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            bail!(
                "the row's process ended early ({status}); {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// SIGTERM (every row writes what it holds and exits), SIGKILL after 30 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// A row that fails leaves no process behind to skew the rows after it.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Watches a consumer group's committed offsets.
pub struct Commits {
    consumer: BaseConsumer,
    partitions: rdkafka::TopicPartitionList,
}

impl Commits {
    pub fn new(brokers: &str, group: &str, topics: &Topics) -> anyhow::Result<Self> {
        // This client never subscribes, so it never joins the group it reads.
        let consumer: BaseConsumer = client_config(brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Commits {
            consumer,
            partitions: topics.partition_list(),
        })
    }

    /// Records committed so far, summed over the partitions.
    pub fn committed(&self) -> anyhow::Result<i64> {
        let list = self
            .consumer
            .committed_offsets(self.partitions.clone(), Duration::from_secs(10))?;
        Ok(list
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum())
    }

    /// Waits until the group's committed offsets cover all `total` records, checking on
    /// `running` (its output in `log`) as it goes. A row may be slow (the JavaScript guest
    /// takes most of an hour), but one with no commit for 300 s is stuck.
    pub fn wait_for_all(
        &self,
        total: i64,
        running: &mut Running,
        log: &Path,
    ) -> anyhow::Result<()> {
        let stall = Duration::from_secs(300);
        let (mut committed, mut moved) = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            running.check_alive(log)?;
            let now = self.committed()?;
            if now >= total {
                return Ok(());
            }
            if now != committed {
                (committed, moved) = (now, Instant::now());
            }
            anyhow::ensure!(
                moved.elapsed() < stall,
                "no commit for {stall:?} ({committed} of {total} committed)"
            );
        }
    }

    /// Whether the group has a member with partitions (it has joined and will read).
    pub fn joined(&self, group: &str) -> anyhow::Result<bool> {
        let groups = self
            .consumer
            .fetch_group_list(Some(group), Duration::from_secs(10))?;
        Ok(groups
            .groups()
            .iter()
            .any(|g| g.state() == "Stable" && !g.members().is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_and_peak_rss_from_proc() {
        let stat = "4242 (wrt run (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 1 2 3";
        let status = "Name:\twrt\nVmPeak:\t  900 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(
            parse_proc(stat, status, 100.0).unwrap(),
            ProcStats {
                cpu_seconds: 3.0,
                peak_rss_bytes: 2 << 20
            }
        );
    }

    #[test]
    fn splits_time_from_the_metrics_wrt_serves() {
        let telemetry = wrt::telemetry::Telemetry::new("bench", "abc");
        telemetry.transform_call(256, Duration::from_millis(250));
        telemetry.transform_call(256, Duration::from_millis(500));
        telemetry.window_written(Duration::from_secs(2));
        telemetry.window_written(Duration::from_secs(1));
        let split = parse_split(&telemetry.encode()).unwrap();
        assert!((split.transform_seconds - 0.75).abs() < 1e-9, "{split:?}");
        assert!((split.write_seconds - 3.0).abs() < 1e-9, "{split:?}");
        assert!(parse_split("# EOF\n").is_err());
    }

    #[test]
    fn reads_this_process() {
        let stats = proc_stats(std::process::id(), clock_ticks().unwrap()).unwrap();
        assert!(stats.peak_rss_bytes > 0);
    }
}
