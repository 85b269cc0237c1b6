//! CPU time and memory of a process, read from Linux's `/proc`.
//!
//! CPU times come from the `utime` and `stime` fields of `/proc/<pid>/stat`, in clock ticks.
//! The process figure includes threads that already exited; a thread's own figure is readable
//! only while it lives.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

/// Clock ticks per second of `utime` and `stime`: `sysconf(_SC_CLK_TCK)`, which is 100 on
/// every mainstream Linux architecture. Reading it needs libc, which this example does not
/// link, so the value is assumed.
const TICKS_PER_SECOND: u64 = 100;

/// The threads of the load generator itself carry names that start with this prefix, so
/// their CPU time can be told apart from the in-process server's.
pub(crate) const CLIENT_THREAD_PREFIX: &str = "loadgen";

/// Returns the user plus system CPU time of `pid`, all threads included.
pub(crate) fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    cpu_of(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// Returns the CPU time of the calling thread.
pub(crate) fn current_thread_cpu() -> anyhow::Result<Duration> {
    cpu_of(Path::new("/proc/thread-self/stat"))
}

/// Returns the summed CPU time of the live threads of this process whose name starts with
/// [`CLIENT_THREAD_PREFIX`].
pub(crate) fn client_threads_cpu() -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task failed")? {
        let stat = entry?.path().join("stat");
        // A thread can exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&stat) else { continue };
        let (name, cpu) = parse_stat(&text).with_context(|| format!("parsing {} failed", stat.display()))?;
        if name.starts_with(CLIENT_THREAD_PREFIX) {
            total += cpu;
        }
    }
    Ok(total)
}

/// Memory of a process from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Memory {
    /// Resident set size now (`VmRSS`), in KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident set size over the process's life (`VmHWM`), in KiB.
    pub(crate) peak_rss_kib: u64,
}

/// Reads the memory figures of `pid`.
pub(crate) fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = Path::new("/proc").join(pid.to_string()).join("status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {} failed", path.display()))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("{} has no {name} line", path.display()))?;
        let value = line[name.len()..].trim().trim_end_matches("kB").trim();
        value.parse().with_context(|| format!("{name} in {} is not a number: {value:?}", path.display()))
    };
    Ok(Memory { rss_kib: field("VmRSS:")?, peak_rss_kib: field("VmHWM:")? })
}

/// Checks that `pid` is a running process.
pub(crate) fn check_process(pid: u32) -> anyhow::Result<()> {
    process_cpu(pid)
        .with_context(|| format!("process {pid} is not readable in /proc; give the pid of the running server"))?;
    Ok(())
}

/// Returns the soft limit on open files of this process, if `/proc/self/limits` states one.
pub(crate) fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn cpu_of(path: &Path) -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {} failed", path.display()))?;
    Ok(parse_stat(&text).with_context(|| format!("parsing {} failed", path.display()))?.1)
}

/// Returns the thread or process name and `utime + stime` of a `stat` line.
fn parse_stat(text: &str) -> anyhow::Result<(&str, Duration)> {
    // The name sits in parentheses and may itself contain spaces or parentheses, so the
    // fields are counted from the last closing parenthesis.
    let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
        bail!("no process name in parentheses");
    };
    let name = &text[open + 1..close];
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();

    // Fields 14 and 15 of stat(5) are utime and stime; after the name, field 3 is index 0.
    let ticks = |index: usize| -> anyhow::Result<u64> {
        let field = fields.get(index).context("the line is too short")?;
        field.parse::<u64>().with_context(|| format!("field {field:?} is not a number"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok((name, Duration::from_millis(total * 1000 / TICKS_PER_SECOND)))
}

/// One RSS sample of a [`RssSampler`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct RssSample {
    /// Seconds since the sampler started.
    pub(crate) at_s: f64,
    /// `VmRSS` then, in KiB.
    pub(crate) rss_kib: u64,
}

/// Samples the RSS of a process on its own thread at a fixed interval, so a long run shows
/// whether memory keeps growing (a soak compares the samples at minutes 2 and 10).
pub(crate) struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<RssSample>>,
}

impl RssSampler {
    /// Starts sampling `pid` every `interval`, with a first sample at once.
    pub(crate) fn start(pid: u32, interval: Duration) -> anyhow::Result<RssSampler> {
        use std::sync::atomic::Ordering;

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_stop = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(format!("{CLIENT_THREAD_PREFIX}-rss")).spawn(move || {
            let started = std::time::Instant::now();
            let mut samples = Vec::new();
            let mut next = started;
            while !thread_stop.load(Ordering::Relaxed) {
                if std::time::Instant::now() >= next {
                    // A failed read (the process exited) ends the series.
                    let Ok(sample) = memory(pid) else { break };
                    samples.push(RssSample { at_s: started.elapsed().as_secs_f64(), rss_kib: sample.rss_kib });
                    next += interval;
                }
                // Short sleeps keep `stop` responsive without a condition variable.
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })?;
        Ok(RssSampler { stop, thread })
    }

    /// Stops sampling and returns the samples in time order.
    pub(crate) fn finish(self) -> Vec<RssSample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
