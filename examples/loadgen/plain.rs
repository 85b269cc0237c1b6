//! The plainest client, for the server CPU time per run: threads send `POST /run` on a new
//! connection each until the run total is reached, then, once every run is created, read each
//! run with one `GET /run/{id}` on a new connection. Runs that are not terminal yet are read
//! again after a short pause; the report counts those extra reads.
//!
//! Requests are written by hand over `std::net::TcpStream` with `Connection: close`, so every
//! request costs the server one accepted connection and nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::closed_loop::is_terminal;
use crate::proc_stats;
use crate::target::{SessionIds, run_body};

/// Pause before the runs that were not terminal are read again.
const REREAD_PAUSE: Duration = Duration::from_millis(20);

/// Limits of one plain measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlainConfig {
    pub(crate) threads: usize,
    pub(crate) runs: u64,
    /// Bound on the whole measurement; runs not terminal by then count as errors.
    pub(crate) timeout: Duration,
}

/// Counts and phase times of one plain measurement.
#[derive(Debug, Default)]
pub(crate) struct PlainStats {
    pub(crate) created: u64,
    pub(crate) complete: u64,
    /// Failed requests and runs that did not end `complete`.
    pub(crate) errors: u64,
    /// The first failure, for the report.
    pub(crate) first_error: Option<String>,
    pub(crate) post_phase: Duration,
    pub(crate) get_phase: Duration,
    /// Reads beyond one per run, of runs that were not terminal yet.
    pub(crate) extra_gets: u64,
    /// CPU time of the client threads, which have exited by the time the report is made.
    pub(crate) client_cpu: Duration,
    /// Ids of the created runs.
    pub(crate) ids: Vec<String>,
}

impl PlainStats {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Runs both phases against the server at `addr`; `ids` is the one session all runs use.
pub(crate) fn run(addr: SocketAddr, ids: &SessionIds, config: PlainConfig) -> PlainStats {
    let stats = Mutex::new(PlainStats::default());
    let deadline = Instant::now() + config.timeout;
    let body = run_body(ids).to_string();

    // Phase 1: create every run.
    let started = Instant::now();
    let tickets = AtomicU64::new(0);
    let created = Mutex::new(Vec::new());
    on_threads(config.threads, &stats, |stats| {
        while tickets.fetch_add(1, Ordering::Relaxed) < config.runs && Instant::now() < deadline {
            match create(addr, &body) {
                Ok(id) => lock(&created).push(id),
                Err(error) => lock(stats).fail(format!("POST /run: {error:#}")),
            }
        }
    });
    let mut pending = std::mem::take(&mut *lock(&created));
    lock(&stats).created = pending.len() as u64;
    lock(&stats).ids.clone_from(&pending);
    lock(&stats).post_phase = started.elapsed();

    // Phase 2: read each run once it is done, and again only if it was not.
    let started = Instant::now();
    let mut first_pass = true;
    while !pending.is_empty() && Instant::now() < deadline {
        if !first_pass {
            lock(&stats).extra_gets += pending.len() as u64;
            std::thread::sleep(REREAD_PAUSE);
        }
        first_pass = false;
        let queue = Mutex::new(pending);
        let unfinished = Mutex::new(Vec::new());
        on_threads(config.threads, &stats, |stats| {
            while let Some(id) = lock(&queue).pop() {
                match read_status(addr, &id) {
                    Ok(status) if status == "complete" => lock(stats).complete += 1,
                    Ok(status) if is_terminal(&status) => lock(stats).fail(format!("run {id} ended {status}")),
                    Ok(_) => lock(&unfinished).push(id),
                    Err(error) => lock(stats).fail(format!("GET /run/{id}: {error:#}")),
                }
            }
        });
        pending = unfinished.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    }

    let mut stats = std::mem::take(&mut *lock(&stats));
    if !pending.is_empty() {
        stats.errors += pending.len() as u64;
        stats.first_error.get_or_insert(format!(
            "{} runs were not terminal within {} s",
            pending.len(),
            config.timeout.as_secs()
        ));
    }
    stats.get_phase = started.elapsed();
    stats
}

/// Runs `work` on `threads` named client threads and adds their CPU time to the stats before
/// they exit, because an exited thread's time can no longer be separated from the server's.
fn on_threads<F>(threads: usize, stats: &Mutex<PlainStats>, work: F)
where
    F: Fn(&Mutex<PlainStats>) + Sync,
{
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let work = &work;
            let spawned = std::thread::Builder::new()
                .name(format!("{}-plain", proc_stats::CLIENT_THREAD_PREFIX))
                .spawn_scoped(scope, move || {
                    work(stats);
                    match proc_stats::current_thread_cpu() {
                        Ok(cpu) => lock(stats).client_cpu += cpu,
                        Err(error) => {
                            lock(stats).fail(format!("reading the client thread's CPU time failed: {error:#}"))
                        }
                    }
                });
            if let Err(error) = spawned {
                lock(stats).fail(format!("starting a client thread failed: {error}"));
            }
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `POST /api/v1/run` on a new connection and returns the new run's id.
fn create(addr: SocketAddr, body: &str) -> anyhow::Result<String> {
    let (status, response) = request(addr, "POST", "/api/v1/run", Some(body))?;
    if status != 201 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&response));
    }
    let envelope: Value = serde_json::from_slice(&response).context("the response is not JSON")?;
    Ok(envelope["data"]["id"].as_str().context("the response has no run id")?.to_owned())
}

/// Sends `GET /api/v1/run/{id}` on a new connection and returns the run's status.
fn read_status(addr: SocketAddr, id: &str) -> anyhow::Result<String> {
    let (status, response) = request(addr, "GET", &format!("/api/v1/run/{id}"), None)?;
    if status != 200 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&response));
    }
    let envelope: Value = serde_json::from_slice(&response).context("the response is not JSON")?;
    Ok(envelope["data"]["status"].as_str().context("the response has no run status")?.to_owned())
}

/// Sends one HTTP/1.1 request with `Connection: close` and returns the status code and the
/// body, read until the server closes the connection.
fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr} failed"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;

    let mut response = Vec::new();
    stream.read_to_end(&mut response).context("reading the response failed")?;
    let split =
        response.windows(4).position(|window| window == b"\r\n\r\n").context("the response has no header end")?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status =
        head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("the response has no status line")?;
    let content = response[split + 4..].to_vec();
    let content = if head.contains("transfer-encoding: chunked") { dechunk(&content)? } else { content };
    Ok((status, content))
}

/// Decodes a chunked body.
fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|window| window == b"\r\n").context("a chunk has no size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("invalid chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = data.get(..size).context("a chunk is shorter than its size")?;
        body.extend_from_slice(chunk);
        data = data.get(size + 2..).context("a chunk has no line end")?;
    }
}
