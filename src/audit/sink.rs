//! The audit sink: a bounded queue in front of one writer thread. With the queue full, a
//! record is dropped and counted (and the drops logged), or the decision waits for room,
//! as `whenFull` says.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;

use super::config::{AuditConfig, AuditMode, AuditOutput, Checked, WhenFull};
use super::record::{DecisionRecord, LineOptions};
use super::rotate::RotatingFile;
use crate::metrics::{AuditDrop, Metrics};

/// How long [`AuditSink::flush`] waits for the writer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest interval between two log lines about dropped records.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

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

enum Message {
    Record(Box<DecisionRecord>),
    Flush(mpsc::Sender<()>),
}

struct Shared {
    tx: SyncSender<Message>,
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
    Stream(BufWriter<Box<dyn Write + Send>>),
    File(RotatingFile),
}

impl Output {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stream(w) => w.write_all(line).and_then(|()| w.write_all(b"\n")),
            Output::File(f) => f.write_line(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stream(w) => w.flush(),
            Output::File(f) => f.flush(),
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
            _ => Output::Stream(BufWriter::new(Box::new(io::stdout()))),
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
        Self::start(
            config,
            checked,
            metrics,
            Output::Stream(BufWriter::new(Box::new(writer))),
        )
    }

    fn start(
        config: &AuditConfig,
        checked: Checked,
        metrics: Metrics,
        output: Output,
    ) -> Result<AuditSink, AuditError> {
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
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
        std::thread::Builder::new()
            .name("gatehouse-audit".into())
            .spawn(move || run(rx, output, options, writer_metrics, drops))
            .map_err(AuditError::Spawn)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Ok(AuditSink {
            shared: Arc::new(ArcSwapOption::from_pointee(Shared {
                tx,
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
        let message = Message::Record(Box::new(build()));
        if s.block {
            if s.tx.send(message).is_err() {
                s.metrics.count_audit_dropped(AuditDrop::WriteError);
            }
            return;
        }
        match s.tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                s.metrics.count_audit_dropped(AuditDrop::QueueFull);
                s.unlogged_drops.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                s.metrics.count_audit_dropped(AuditDrop::WriteError);
            }
        }
    }

    /// Waits (up to 5 s) until every record queued so far is written and flushed. Returns
    /// whether the writer confirmed. For tests and shutdown; it may block.
    pub fn flush(&self) -> bool {
        self.flush_timeout(FLUSH_TIMEOUT)
    }

    /// [`flush`](Self::flush) with a chosen timeout.
    pub(crate) fn flush_timeout(&self, timeout: Duration) -> bool {
        let shared = self.shared.load_full();
        let Some(s) = shared.as_ref() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::channel();
        let mut message = Message::Flush(ack_tx);
        loop {
            match s.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The writer thread: serialises and writes what is queued in batches, flushing when the
/// queue runs empty, and logs the records dropped meanwhile.
fn run(
    rx: Receiver<Message>,
    mut out: Output,
    options: LineOptions,
    metrics: Metrics,
    mut drops: DropLog,
) {
    let mut failing = false;
    let mut handle = |out: &mut Output, message: Message| match message {
        Message::Record(r) => {
            let line = r.to_line(&options);
            match out.write_line(line.as_bytes()) {
                Ok(()) => failing = false,
                Err(e) => {
                    metrics.count_audit_dropped(AuditDrop::WriteError);
                    if !failing {
                        tracing::warn!(error = %e, "audit log write failed; dropping records");
                    }
                    failing = true;
                }
            }
        }
        Message::Flush(ack) => {
            let _ = out.flush();
            let _ = ack.send(());
        }
    };
    while let Ok(first) = rx.recv() {
        handle(&mut out, first);
        while let Ok(next) = rx.try_recv() {
            handle(&mut out, next);
        }
        let _ = out.flush();
        drops.report(false);
    }
    let _ = out.flush();
    drops.report(true);
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

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
            // Each record is larger than the writer's buffer, so the writer blocks.
            sink.record(DecisionRecord::new(
                Origin::Api,
                format!("{i}-{}", "x".repeat(9000)),
            ));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let dropped = metrics.audit_dropped();
        assert!((194..=196).contains(&dropped), "dropped {dropped}");
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
