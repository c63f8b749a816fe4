//! The audit sink: a bounded queue in front of one writer thread. With the queue full, a
//! record is dropped and counted (and the drops logged), or the decision waits for room,
//! as `whenFull` says.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;

use super::config::{AuditConfig, AuditMode, AuditOutput, Checked, WhenFull};
use super::record::{DecisionRecord, LineOptions, TimeCache};
use super::rotate::RotatingFile;
use crate::metrics::{AuditDrop, Metrics};

/// How long [`AuditSink::flush`] waits for the writer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest interval between two log lines about dropped records.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// How long the writer lets records gather once the first one is queued, unless the
/// batch fills up first: one wake-up and one write per batch instead of per record.
const LINGER: Duration = Duration::from_millis(5);

/// The most records a batch waits for before the writer is woken early.
const MAX_WAKE_AT: usize = 256;

/// Why the audit sink could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The `audit` settings are invalid.
    #[error("audit: {0}")]
    Config(String),
    /// The audit file cannot be opened.
    #[error("audit: cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The writer thread cannot be started.
    #[error("audit: cannot start the writer thread: {0}")]
    Spawn(io::Error),
}

/// What the writer thread is doing, so that a producer wakes it (a system call) only
/// when it waits for exactly what the producer brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriterState {
    /// Writing, or about to look at the queue again: nobody needs to wake it.
    Busy,
    /// Waiting for a first record.
    Idle,
    /// Waiting (at most [`LINGER`]) for the batch to fill up to `wake_at` records.
    Lingering,
}

/// The queue's state, under one lock.
struct State {
    records: Vec<DecisionRecord>,
    writer: WriterState,
    /// No handle is left: the writer drains the queue and ends.
    closed: bool,
    /// Records queued so far.
    queued: u64,
    /// Records written and flushed (or failed) so far, counted in queue order.
    written: u64,
    /// Callers of [`AuditSink::flush`] waiting for `written`.
    flush_waiters: usize,
    /// Producers waiting for room (`whenFull: block`).
    blocked: usize,
}

/// The bounded buffer between decisions and the writer thread. A decision pushes under
/// a short lock and makes no system call unless the writer waits for it (the first record
/// after a quiet spell, or a batch of `wake_at` records); the writer swaps the whole
/// buffer out and writes it as one batch.
struct Queue {
    state: Mutex<State>,
    /// The writer waits here.
    wake_writer: Condvar,
    /// Blocked producers wait here for room.
    room: Condvar,
    /// [`AuditSink::flush`] waits here for the writer.
    flushed: Condvar,
    capacity: usize,
    /// Batch size at which a lingering writer is woken.
    wake_at: usize,
}

impl Queue {
    fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(State {
                records: Vec::with_capacity(capacity.min(MAX_WAKE_AT * 4)),
                writer: WriterState::Busy,
                closed: false,
                queued: 0,
                written: 0,
                flush_waiters: 0,
                blocked: 0,
            }),
            wake_writer: Condvar::new(),
            room: Condvar::new(),
            flushed: Condvar::new(),
            capacity,
            wake_at: (capacity / 2).clamp(1, MAX_WAKE_AT),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the writer if it waits (the caller notifies after unlocking, see
    /// [`Queue::notify_writer`]): returns whether to notify.
    fn take_writer(st: &mut State) -> bool {
        let waiting = st.writer != WriterState::Busy;
        st.writer = WriterState::Busy;
        waiting
    }

    fn notify_writer(&self, wake: bool) {
        if wake {
            self.wake_writer.notify_one();
        }
    }

    /// Queues `record`; false when the queue is full and `block` is off (the record is
    /// dropped).
    fn push(&self, record: DecisionRecord, block: bool) -> bool {
        let mut st = self.lock();
        while st.records.len() >= self.capacity {
            if !block {
                drop(st);
                return false;
            }
            let wake = Self::take_writer(&mut st);
            self.notify_writer(wake);
            st.blocked += 1;
            st = self.room.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.blocked -= 1;
        }
        st.records.push(record);
        st.queued += 1;
        let wake = match st.writer {
            WriterState::Busy => false,
            WriterState::Idle => true,
            WriterState::Lingering => st.records.len() >= self.wake_at,
        };
        if wake {
            st.writer = WriterState::Busy;
        }
        drop(st);
        self.notify_writer(wake);
        true
    }

    /// Waits until every record queued before the call is written, or `timeout` passes.
    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        let target = st.queued;
        if st.written >= target {
            return true;
        }
        st.flush_waiters += 1;
        let wake = Self::take_writer(&mut st);
        self.notify_writer(wake);
        while st.written < target {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .flushed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        st.flush_waiters -= 1;
        st.written >= target
    }

    /// Ends the writer once the queue is drained.
    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let wake = Self::take_writer(&mut st);
        drop(st);
        self.notify_writer(wake);
    }
}

struct Shared {
    queue: Arc<Queue>,
    /// `None`: every decision; `Some(t)`: kept when a random u64 is below `t`.
    threshold: Option<u64>,
    include_attributes: bool,
    metrics: Metrics,
    seed: u64,
    seq: AtomicU64,
    /// Wait for room instead of dropping (`whenFull: block`).
    block: bool,
    /// Records dropped for a full queue and not logged yet (the writer logs them).
    unlogged_drops: Arc<AtomicU64>,
}

impl Drop for Shared {
    /// The last handle to this configuration is gone (shutdown, or a reload replaced
    /// it): the writer writes what is queued, flushes and ends.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Counts of dropped records waiting to be logged, at most one line per interval.
struct DropLog {
    pending: Arc<AtomicU64>,
    last: Option<Instant>,
}

impl DropLog {
    /// The number of drops to log now (and forgets them), if any and if the last line is
    /// at least [`DROP_LOG_INTERVAL`] old (`force`: regardless of the interval).
    fn due(&mut self, now: Instant, force: bool) -> Option<u64> {
        if !force
            && self
                .last
                .is_some_and(|t| now.duration_since(t) < DROP_LOG_INTERVAL)
        {
            return None;
        }
        let n = self.pending.swap(0, Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        self.last = Some(now);
        Some(n)
    }

    /// Whether drops wait to be logged.
    fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
    }

    /// Logs the drops that are due.
    fn report(&mut self, force: bool) {
        if let Some(n) = self.due(Instant::now(), force) {
            tracing::warn!(
                dropped = n,
                "audit queue full: {n} decision records dropped (raise audit.queueCapacity, or set audit.whenFull: block)"
            );
        }
    }
}

/// The decision log: a cheap, cloneable handle. Lines are written by a background
/// thread, which ends once every handle is dropped (or the sink is replaced) and the
/// queue is drained. Clones share one slot, so [`replace_with`](AuditSink::replace_with)
/// reconfigures every holder at once (a configuration reload).
#[derive(Clone)]
pub struct AuditSink {
    shared: Arc<ArcSwapOption<Shared>>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("enabled", &self.shared.load().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for AuditSink {
    fn default() -> Self {
        AuditSink::disabled()
    }
}

enum Output {
    /// Standard output or a caller's writer: a batch is one `write_all`.
    Stream(Box<dyn Write + Send>),
    File(RotatingFile),
}

impl Output {
    /// Writes `lines` (each ending in a newline) and flushes: one write for a stream, line
    /// by line for a rotating file (it may rotate between lines). Returns how many lines
    /// were lost and the first error.
    fn write_batch(&mut self, lines: &[u8], count: u64) -> (u64, Option<io::Error>) {
        match self {
            Output::Stream(w) => match w.write_all(lines).and_then(|()| w.flush()) {
                Ok(()) => (0, None),
                Err(e) => (count, Some(e)),
            },
            Output::File(f) => {
                let (mut lost, mut first) = (0, None);
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    if let Err(e) = f.write_line(line.strip_suffix(b"\n").unwrap_or(line)) {
                        lost += 1;
                        first.get_or_insert(e);
                    }
                }
                if let Err(e) = f.flush() {
                    first.get_or_insert(e);
                }
                (lost, first)
            }
        }
    }
}

/// SplitMix64: a well-mixed u64 from a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl AuditSink {
    /// A sink that records nothing.
    pub fn disabled() -> Self {
        AuditSink {
            shared: Arc::new(ArcSwapOption::empty()),
        }
    }

    /// The sink `config` describes (stdout or a rotating file), counting drops in
    /// `metrics`. Mode `off` gives a disabled sink.
    pub fn new(config: &AuditConfig, metrics: Metrics) -> Result<AuditSink, AuditError> {
        let checked = config.check()?;
        if config.mode == AuditMode::Off {
            return Ok(AuditSink::disabled());
        }
        let output = match (config.output, &config.file) {
            (AuditOutput::File, Some(f)) => {
                Output::File(RotatingFile::open(&f.path, f.max_bytes, f.keep).map_err(
                    |source| AuditError::Open {
                        path: f.path.clone(),
                        source,
                    },
                )?)
            }
            _ => Output::Stream(Box::new(io::stdout())),
        };
        Self::start(config, checked, metrics, output)
    }

    /// A sink writing lines to `writer` (the `output` and `file` settings are ignored).
    pub fn to_writer(
        config: &AuditConfig,
        metrics: Metrics,
        writer: impl Write + Send + 'static,
    ) -> Result<AuditSink, AuditError> {
        let checked = config.check()?;
        if config.mode == AuditMode::Off {
            return Ok(AuditSink::disabled());
        }
        Self::start(config, checked, metrics, Output::Stream(Box::new(writer)))
    }

    fn start(
        config: &AuditConfig,
        checked: Checked,
        metrics: Metrics,
        output: Output,
    ) -> Result<AuditSink, AuditError> {
        let queue = Arc::new(Queue::new(config.queue_capacity));
        let options = LineOptions {
            include_attributes: config.include_attributes,
            masks: checked.masks,
        };
        let writer_metrics = metrics.clone();
        let unlogged_drops = Arc::new(AtomicU64::new(0));
        let drops = DropLog {
            pending: unlogged_drops.clone(),
            last: None,
        };
        // The writer logs where the sink's creator logs.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let writer_queue = queue.clone();
        std::thread::Builder::new()
            .name("gatehouse-audit".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    run(&writer_queue, output, &options, &writer_metrics, drops);
                });
            })
            .map_err(AuditError::Spawn)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Ok(AuditSink {
            shared: Arc::new(ArcSwapOption::from_pointee(Shared {
                queue,
                threshold: checked.threshold,
                include_attributes: config.include_attributes,
                metrics,
                seed: mix(nanos ^ u64::from(std::process::id())),
                seq: AtomicU64::new(0),
                block: config.when_full == WhenFull::Block,
                unlogged_drops,
            })),
        })
    }

    /// Makes every handle sharing this sink write as `other` does from now on (records
    /// already queued are still written by the old writer, which then ends).
    pub(crate) fn replace_with(&self, other: &AuditSink) {
        self.shared.store(other.shared.load_full());
    }

    #[cfg(test)]
    /// Whether any decision is logged at all.
    fn is_enabled(&self) -> bool {
        self.shared.load().is_some()
    }

    /// Whether records should carry attributes (`includeAttributes`): callers skip
    /// converting them otherwise.
    pub(crate) fn wants_attributes(&self) -> bool {
        self.shared
            .load()
            .as_ref()
            .is_some_and(|s| s.include_attributes)
    }

    #[cfg(test)]
    /// Records a decision (subject to sampling). With the queue full, the record is dropped
    /// and `gatehouse_audit_dropped_total{reason="queue_full"}` grows, or (`whenFull:
    /// block`) the caller waits for room.
    fn record(&self, record: DecisionRecord) {
        self.record_with(|| record);
    }

    /// Like [`record`](Self::record), but builds the record only when the decision is
    /// sampled, so unsampled decisions cost nothing.
    pub(crate) fn record_with(&self, build: impl FnOnce() -> DecisionRecord) {
        let shared = self.shared.load();
        let Some(s) = shared.as_ref() else { return };
        if let Some(threshold) = s.threshold {
            let n = s.seq.fetch_add(1, Ordering::Relaxed);
            if mix(s.seed ^ n.wrapping_mul(0xa076_1d64_78bd_642f)) >= threshold {
                return;
            }
        }
        if !s.queue.push(build(), s.block) {
            s.metrics.count_audit_dropped(AuditDrop::QueueFull);
            s.unlogged_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (up to 5 s) until every record queued so far is written and flushed. Returns
    /// whether the writer confirmed. For tests and shutdown; it may block.
    pub fn flush(&self) -> bool {
        self.flush_timeout(FLUSH_TIMEOUT)
    }

    /// [`flush`](Self::flush) with a chosen timeout.
    pub(crate) fn flush_timeout(&self, timeout: Duration) -> bool {
        match self.shared.load_full() {
            Some(s) => s.queue.flush(timeout),
            None => true,
        }
    }
}

/// The writer's line buffer and whether the output is failing (a failure is logged once
/// until a write succeeds again).
#[derive(Default)]
struct BatchOut {
    lines: Vec<u8>,
    failing: bool,
    /// The text of the last second written.
    times: TimeCache,
}

impl BatchOut {
    /// Serialises `batch` (emptying it) into one buffer and writes it; lost lines are
    /// counted as write errors.
    fn write(
        &mut self,
        batch: &mut Vec<DecisionRecord>,
        out: &mut Output,
        options: &LineOptions,
        metrics: &Metrics,
    ) {
        self.lines.clear();
        let count = batch.len() as u64;
        for record in batch.drain(..) {
            record.write_line(options, &mut self.times, &mut self.lines);
            self.lines.push(b'\n');
        }
        let (lost, error) = out.write_batch(&self.lines, count);
        for _ in 0..lost {
            metrics.count_audit_dropped(AuditDrop::WriteError);
        }
        match error {
            Some(e) if !self.failing => {
                tracing::warn!(error = %e, "audit log write failed; dropping records");
                self.failing = true;
            }
            Some(_) => {}
            None => self.failing = false,
        }
        // Keep the buffer's memory bounded after a burst of large records.
        if self.lines.capacity() > 4 << 20 {
            self.lines = Vec::new();
        }
    }
}

/// The writer thread: waits for a first record, lets a batch gather (up to [`LINGER`] or
/// `wake_at` records), swaps the whole queue out, serialises it into one buffer and
/// writes it with one write; logs the records dropped meanwhile. It never spins: every
/// wait is on the queue's condition variable. Ends when the queue is closed and drained.
/// Never inlined: `benches/callgrind_server.sh` counts the writer thread by this name.
#[inline(never)]
fn run(
    queue: &Queue,
    mut out: Output,
    options: &LineOptions,
    metrics: &Metrics,
    mut drops: DropLog,
) {
    let mut batch: Vec<DecisionRecord> = Vec::new();
    let mut batch_out = BatchOut::default();
    let mut st = queue.lock();
    loop {
        st = match wait_for_records(queue, st, &mut drops) {
            Some(st) => st,
            None => return,
        };
        st = linger(queue, st);
        std::mem::swap(&mut st.records, &mut batch);
        let upto = st.queued;
        if st.blocked > 0 {
            queue.room.notify_all();
        }
        drop(st);

        batch_out.write(&mut batch, &mut out, options, metrics);
        drops.report(false);

        st = queue.lock();
        st.written = upto;
        if st.flush_waiters > 0 {
            queue.flushed.notify_all();
        }
    }
}

/// The writer's idle wait: until the queue holds a record, waking to log the pending
/// drops once their interval is over. `None` (after logging the last drops) when the
/// queue is closed and empty.
fn wait_for_records<'q>(
    queue: &'q Queue,
    mut st: MutexGuard<'q, State>,
    drops: &mut DropLog,
) -> Option<MutexGuard<'q, State>> {
    while st.records.is_empty() {
        if st.closed {
            drop(st);
            drops.report(true);
            return None;
        }
        st.writer = WriterState::Idle;
        if drops.pending() {
            // Wake up to log the drops still pending once their interval is over.
            st = queue
                .wake_writer
                .wait_timeout(st, DROP_LOG_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.writer = WriterState::Busy;
            drop(st);
            drops.report(false);
            st = queue.lock();
        } else {
            st = queue
                .wake_writer
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.writer = WriterState::Busy;
        }
    }
    Some(st)
}

/// Lets a batch gather: below `wake_at` records (and with nobody waiting on a flush),
/// waits up to [`LINGER`] for more.
fn linger<'q>(queue: &'q Queue, mut st: MutexGuard<'q, State>) -> MutexGuard<'q, State> {
    if st.records.len() < queue.wake_at && !st.closed && st.flush_waiters == 0 {
        st.writer = WriterState::Lingering;
        st = queue
            .wake_writer
            .wait_timeout(st, LINGER)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        st.writer = WriterState::Busy;
    }
    st
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::metrics::Origin;

    /// A writer collecting bytes, blocked until its gate opens.
    #[derive(Clone, Default)]
    struct Gated {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Gated {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }

        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.bytes.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn config(json: &str) -> AuditConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let w = Gated::default();
        let metrics = Metrics::default();
        let sink = AuditSink::to_writer(
            &config(r#"{"mode":"all","queueCapacity":4}"#),
            metrics.clone(),
            w.clone(),
        )
        .unwrap();
        let started = Instant::now();
        for i in 0..200 {
            // The closed gate holds the writer in its first write.
            sink.record(DecisionRecord::new(
                Origin::Api,
                format!("{i}-{}", "x".repeat(9000)),
            ));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // The writer holds at most one batch (the 4 queued records) while it is stuck, and
        // the queue holds 4 more.
        let dropped = metrics.audit_dropped();
        assert!((192..=196).contains(&dropped), "dropped {dropped}");
        let pending = sink
            .shared
            .load()
            .as_ref()
            .unwrap()
            .unlogged_drops
            .load(Ordering::Relaxed);
        assert_eq!(pending, dropped, "every drop waits to be logged");
        w.open();
        assert!(sink.flush());
        assert_eq!(w.lines().len() as u64, 200 - dropped);
    }

    #[test]
    fn when_full_block_waits_and_loses_nothing() {
        let w = Gated::default();
        let metrics = Metrics::default();
        let sink = AuditSink::to_writer(
            &config(r#"{"mode":"all","queueCapacity":2,"whenFull":"block"}"#),
            metrics.clone(),
            w.clone(),
        )
        .unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let producer = sink.clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                producer.record(DecisionRecord::new(
                    Origin::Api,
                    format!("{i}-{}", "x".repeat(9000)),
                ));
            }
            done_tx.send(()).unwrap();
        });
        // The writer is stuck, so the producer must be waiting, not dropping.
        assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(metrics.audit_dropped(), 0);
        w.open();
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(sink.flush());
        assert_eq!(w.lines().len(), 50);
        assert_eq!(metrics.audit_dropped(), 0);
    }

    /// A writer that counts its `write` calls.
    #[derive(Clone, Default)]
    struct Counting {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicU64>,
    }

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_are_written_in_batches_whole_and_in_order() {
        let w = Counting::default();
        let sink = AuditSink::to_writer(
            &config(r#"{"mode":"all","whenFull":"block"}"#),
            Metrics::default(),
            w.clone(),
        )
        .unwrap();
        let n = 5000;
        let producers: Vec<_> = (0..2)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..n {
                        sink.record(DecisionRecord::new(Origin::Api, format!("{t}-{i}")));
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        assert!(sink.flush());
        let text = String::from_utf8(w.bytes.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'));
        let mut next = [0; 2];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = v["decisionId"].as_str().unwrap();
            let (t, i) = id.split_once('-').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(i, next[t].to_string(), "each producer's records in order");
            next[t] += 1;
        }
        assert_eq!(next, [n, n]);
        // One write per batch: batches close at 256 records or after 5 ms.
        let writes = w.writes.load(Ordering::Relaxed);
        assert!(
            writes <= 2 * n / 50,
            "{writes} writes for {} records",
            2 * n
        );
    }

    #[test]
    fn an_idle_writer_waits_without_spinning() {
        let w = Counting::default();
        let sink =
            AuditSink::to_writer(&config(r#"{"mode":"all"}"#), Metrics::default(), w.clone())
                .unwrap();
        sink.record(DecisionRecord::new(Origin::Api, "one"));
        assert!(sink.flush());
        std::thread::sleep(Duration::from_millis(30));
        let shared = sink.shared.load_full().unwrap();
        let st = shared.queue.lock();
        assert_eq!(
            st.writer,
            WriterState::Idle,
            "waiting for a record, not polling"
        );
        assert_eq!((st.queued, st.written), (1, 1));
    }

    #[test]
    fn a_replaced_sink_writes_what_it_had_queued() {
        let old = Gated::default();
        let sink = AuditSink::to_writer(
            &config(r#"{"mode":"all"}"#),
            Metrics::default(),
            old.clone(),
        )
        .unwrap();
        for i in 0..10 {
            sink.record(DecisionRecord::new(Origin::Api, i.to_string()));
        }
        sink.replace_with(&AuditSink::disabled());
        old.open();
        let deadline = Instant::now() + Duration::from_secs(5);
        while old.lines().len() < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(old.lines().len(), 10);
    }

    #[test]
    fn drops_are_logged_with_their_count() {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl Write for Captured {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = Captured::default();
        let make = {
            let log = log.clone();
            move || log.clone()
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(make)
            .with_ansi(false)
            .finish();
        let w = Gated::default();
        let metrics = Metrics::default();
        tracing::subscriber::with_default(subscriber, || {
            let sink = AuditSink::to_writer(
                &config(r#"{"mode":"all","queueCapacity":2}"#),
                metrics.clone(),
                w.clone(),
            )
            .unwrap();
            for i in 0..50 {
                sink.record(DecisionRecord::new(Origin::Api, i.to_string()));
            }
            w.open();
            assert!(sink.flush());
        });
        let dropped = metrics.audit_dropped();
        assert!(dropped >= 46, "dropped {dropped}");
        assert_eq!(w.lines().len() as u64, 50 - dropped);
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(&format!(
                "audit queue full: {dropped} decision records dropped"
            )),
            "{text}"
        );
    }

    #[test]
    fn dropped_records_are_logged_at_most_once_a_second() {
        let pending = Arc::new(AtomicU64::new(0));
        let mut log = DropLog {
            pending: pending.clone(),
            last: None,
        };
        let t0 = Instant::now();
        assert_eq!(log.due(t0, false), None);
        pending.fetch_add(3, Ordering::Relaxed);
        assert_eq!(log.due(t0, false), Some(3));
        pending.fetch_add(2, Ordering::Relaxed);
        assert_eq!(log.due(t0 + Duration::from_millis(500), false), None);
        assert_eq!(log.due(t0 + Duration::from_millis(1500), false), Some(2));
        pending.fetch_add(1, Ordering::Relaxed);
        assert_eq!(log.due(t0 + Duration::from_millis(1600), true), Some(1));
    }

    #[test]
    fn issue_18_replacing_a_sink_reconfigures_every_clone() {
        let (first, second) = (Gated::default(), Gated::default());
        first.open();
        second.open();
        let all = config(r#"{"mode":"all"}"#);
        let sink = AuditSink::to_writer(&all, Metrics::default(), first.clone()).unwrap();
        let held_elsewhere = sink.clone();
        held_elsewhere.record(DecisionRecord::new(Origin::Api, "one"));
        assert!(held_elsewhere.flush());
        sink.replace_with(&AuditSink::to_writer(&all, Metrics::default(), second.clone()).unwrap());
        held_elsewhere.record(DecisionRecord::new(Origin::Api, "two"));
        assert!(held_elsewhere.flush());
        assert_eq!(first.lines().len(), 1);
        assert_eq!(second.lines().len(), 1);
        assert!(second.lines()[0].contains("two"));
        sink.replace_with(&AuditSink::disabled());
        assert!(!held_elsewhere.is_enabled());
    }

    #[test]
    fn sampling_keeps_about_the_rate() {
        let w = Gated::default();
        w.open();
        let sink = AuditSink::to_writer(
            &config(r#"{"mode":"sampled","sampleRate":0.25,"queueCapacity":20000}"#),
            Metrics::default(),
            w.clone(),
        )
        .unwrap();
        let mut built = 0;
        for i in 0..10_000 {
            sink.record_with(|| {
                built += 1;
                DecisionRecord::new(Origin::Api, i.to_string())
            });
        }
        assert!(sink.flush());
        let n = w.lines().len();
        assert_eq!(n, built);
        assert!((2000..3000).contains(&n), "{n} of 10000 sampled at 0.25");

        let none = AuditSink::to_writer(
            &config(r#"{"mode":"sampled","sampleRate":0}"#),
            Metrics::default(),
            w.clone(),
        )
        .unwrap();
        none.record(DecisionRecord::new(Origin::Api, "x"));
        assert!(none.flush());
        assert_eq!(w.lines().len(), n);
    }

    #[test]
    fn off_records_nothing_and_bad_files_are_errors() {
        let off = AuditSink::new(&AuditConfig::default(), Metrics::default()).unwrap();
        assert!(!off.is_enabled() && !off.wants_attributes());
        off.record(DecisionRecord::new(Origin::Api, "x"));
        assert!(off.flush());

        let e = AuditSink::new(
            &config(
                r#"{"mode":"all","output":"file","file":{"path":"/nonexistent-dir/x/audit.log"}}"#,
            ),
            Metrics::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-dir/x/audit.log"),
            "{e}"
        );
    }
}
