//! The building blocks of the registry: labelled metric families with a cap on distinct
//! label combinations, counters, duration histograms, and the text exposition format.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The label value every label of the overflow series carries.
pub(crate) const OTHER: &str = "other";

/// Longest label value kept (bytes); longer values are cut at a character boundary.
pub(crate) const MAX_LABEL_VALUE_BYTES: usize = 128;

/// A series kind: how one label combination's value is kept and printed.
pub(crate) trait Series: Default {
    /// The `# TYPE` of the family.
    const TYPE: &'static str;

    /// Appends this series' sample lines; `labels` is `k="v",...` (possibly empty).
    fn render(&self, name: &str, labels: &str, out: &mut String);
}

// === impl Counter ===

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Series for Counter {
    const TYPE: &'static str = "counter";

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        sample(out, name, labels, None, &self.get().to_string());
    }
}

// === impl Histogram ===

/// Bucket upper bounds: nanoseconds and their exposition text (seconds).
const BOUNDS: [(u64, &str); 16] = [
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
];

/// A histogram of durations, in seconds, with fixed buckets from 50 µs to 5 s.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub(crate) fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idx = BOUNDS
            .iter()
            .position(|(b, _)| nanos <= *b)
            .unwrap_or(BOUNDS.len());
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Series for Histogram {
    const TYPE: &'static str = "histogram";

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, (_, le)) in BOUNDS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            sample(out, &bucket, labels, Some(le), &cumulative.to_string());
        }
        cumulative += self.counts[BOUNDS.len()].load(Ordering::Relaxed);
        sample(out, &bucket, labels, Some("+Inf"), &cumulative.to_string());
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        sample(out, &format!("{name}_sum"), labels, None, &sum.to_string());
        sample(
            out,
            &format!("{name}_count"),
            labels,
            None,
            &cumulative.to_string(),
        );
    }
}

/// Appends `name{labels,le="..."} value`.
fn sample(out: &mut String, name: &str, labels: &str, le: Option<&str>, value: &str) {
    out.push_str(name);
    match (labels.is_empty(), le) {
        (true, None) => {}
        (true, Some(le)) => {
            let _ = write!(out, "{{le=\"{le}\"}}");
        }
        (false, None) => {
            let _ = write!(out, "{{{labels}}}");
        }
        (false, Some(le)) => {
            let _ = write!(out, "{{{labels},le=\"{le}\"}}");
        }
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Appends the `# HELP` and `# TYPE` lines of a family.
pub(crate) fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends one sample of a family without a registry entry (values read at scrape time).
pub(crate) fn plain_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    sample(out, name, &render_labels(labels), None, &value.to_string());
}

/// `k="v",...` with values escaped as the text format requires.
pub(crate) fn render_labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `value` cut to at most [`MAX_LABEL_VALUE_BYTES`], at a character boundary.
pub(crate) fn clip(value: &str) -> &str {
    if value.len() <= MAX_LABEL_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_LABEL_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

// === impl Family ===

struct Entry<S, const N: usize> {
    values: [Box<str>; N],
    /// Shared with the holders of a [`Family::handle`].
    series: Arc<S>,
}

struct Table<S, const N: usize> {
    /// Series by the hash of their label values (a bucket holds the rare collisions).
    by_hash: HashMap<u64, Vec<Entry<S, N>>, RandomState>,
    len: usize,
    overflow: Option<Arc<S>>,
}

/// A metric family with `N` labels. At most `cap` distinct label combinations are kept;
/// any further combination is counted in one overflow series whose labels are all
/// [`OTHER`], so request-supplied values cannot grow memory or the scrape without bound.
pub(crate) struct Family<S, const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    cap: usize,
    hasher: RandomState,
    table: RwLock<Table<S, N>>,
}

impl<S: Series, const N: usize> Family<S, N> {
    /// An empty family.
    pub(crate) fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        cap: usize,
    ) -> Self {
        Family {
            name,
            help,
            labels,
            cap,
            hasher: RandomState::default(),
            table: RwLock::new(Table {
                by_hash: HashMap::default(),
                len: 0,
                overflow: None,
            }),
        }
    }

    fn hash(&self, values: &[&str; N]) -> u64 {
        self.hasher.hash_one(values)
    }

    /// Runs `f` on the series of `values` (created if new, or the overflow series once
    /// the family is full).
    pub(crate) fn with<R>(&self, values: [&str; N], f: impl FnOnce(&S) -> R) -> R {
        self.with_shared(values, |s| f(s))
    }

    /// The series of `values` (as [`with`](Self::with) finds or creates it), to record
    /// on without looking it up again: for label values fixed in advance.
    pub(crate) fn handle(&self, values: [&str; N]) -> Arc<S> {
        self.with_shared(values, Arc::clone)
    }

    fn with_shared<R>(&self, values: [&str; N], f: impl FnOnce(&Arc<S>) -> R) -> R {
        let values = values.map(clip);
        let hash = self.hash(&values);
        let same = |e: &&Entry<S, N>| e.values.iter().map(|v| &**v).eq(values.iter().copied());
        {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = table.by_hash.get(&hash).and_then(|b| b.iter().find(same)) {
                return f(&e.series);
            }
            if table.len >= self.cap
                && let Some(o) = &table.overflow
            {
                return f(o);
            }
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let table = &mut *table;
        if let Some(i) = table
            .by_hash
            .get(&hash)
            .and_then(|b| b.iter().position(|e| same(&e)))
        {
            return f(&table.by_hash[&hash][i].series);
        }
        if table.len >= self.cap {
            return f(table.overflow.get_or_insert_with(Arc::default));
        }
        table.len += 1;
        let bucket = table.by_hash.entry(hash).or_default();
        bucket.push(Entry {
            values: values.map(Box::from),
            series: Arc::default(),
        });
        let last = bucket.len() - 1;
        f(&bucket[last].series)
    }

    /// Sums `get` over every series (overflow included).
    pub(crate) fn sum(&self, get: impl Fn(&S) -> u64) -> u64 {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table
            .by_hash
            .values()
            .flatten()
            .map(|e| get(&e.series))
            .chain(table.overflow.iter().map(|o| get(o)))
            .sum()
    }

    /// Appends the family in the text exposition format, series sorted by labels.
    pub(crate) fn render(&self, out: &mut String) {
        header(out, self.name, self.help, S::TYPE);
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(String, &S)> = table
            .by_hash
            .values()
            .flatten()
            .map(|e| {
                let pairs: Vec<(&str, &str)> = self
                    .labels
                    .iter()
                    .copied()
                    .zip(e.values.iter().map(|v| &**v))
                    .collect();
                (render_labels(&pairs), &*e.series)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(o) = &table.overflow {
            let pairs: Vec<(&str, &str)> = self.labels.iter().map(|l| (*l, OTHER)).collect();
            rows.push((render_labels(&pairs), &**o));
        }
        for (labels, series) in rows {
            series.render(self.name, &labels, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            render_labels(&[("a", "x\"y"), ("b", "p\\q\nr")]),
            r#"a="x\"y",b="p\\q\nr""#
        );
        assert_eq!(render_labels(&[]), "");
    }

    #[test]
    fn long_values_are_clipped_on_char_boundaries() {
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.len() <= MAX_LABEL_VALUE_BYTES);
        assert!(c.chars().all(|ch| ch == 'é'));
        assert_eq!(clip("read"), "read");
    }

    #[test]
    fn cap_sends_new_combinations_to_other() {
        let f: Family<Counter, 2> = Family::new("t_total", "Test.", ["a", "b"], 3);
        for i in 0..10 {
            f.with(["x", &i.to_string()], |c| c.add(1));
        }
        f.with(["x", "0"], |c| c.add(1));
        let mut out = String::new();
        f.render(&mut out);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 4, "{out}");
        assert!(out.contains("t_total{a=\"x\",b=\"0\"} 2\n"), "{out}");
        assert!(
            out.contains("t_total{a=\"other\",b=\"other\"} 7\n"),
            "{out}"
        );
        assert_eq!(f.sum(Counter::get), 11);
        // A handle is the series itself: the kept one, or the overflow once full.
        f.handle(["x", "0"]).add(1);
        f.handle(["y", "new"]).add(1);
        f.render(&mut out);
        assert!(out.contains("t_total{a=\"x\",b=\"0\"} 3\n"), "{out}");
        assert!(
            out.contains("t_total{a=\"other\",b=\"other\"} 8\n"),
            "{out}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render("d", "o=\"x\"", &mut out);
        assert!(
            out.contains("d_bucket{o=\"x\",le=\"0.00005\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("d_bucket{o=\"x\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("d_bucket{o=\"x\",le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("d_bucket{o=\"x\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("d_count{o=\"x\"} 3\n"), "{out}");
        assert!(out.contains("d_sum{o=\"x\"} 60.00301\n"), "{out}");
    }
}
