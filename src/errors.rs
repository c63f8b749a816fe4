//! One non-empty list of problems, shared by every stage that collects its problems
//! instead of stopping at the first: loading policies, compiling them, compiling JSON
//! schemas and reading configuration files. Imports nothing of Gatehouse.

use std::fmt;

/// One problem as it is printed in an [`Errors`] report. By default its `Display`;
/// a kind overrides it when the report shows more (a source excerpt, the schema's name).
pub(crate) trait Report: fmt::Display {
    /// Writes this problem as one entry of a report.
    fn report(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Every problem found by one stage; never empty. Printed one problem per line, in the
/// order they were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors<E>(Vec<E>);

impl<E> Errors<E> {
    /// The problems of `errors`; `None` when there are none.
    pub(crate) fn from_vec(errors: Vec<E>) -> Option<Self> {
        (!errors.is_empty()).then_some(Self(errors))
    }

    /// A single problem.
    pub(crate) fn one(error: E) -> Self {
        Self(vec![error])
    }

    /// The problems, in the order they were found.
    pub fn errors(&self) -> &[E] {
        &self.0
    }

    /// The problems, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, E> {
        self.0.iter()
    }

    #[cfg(test)]
    /// How many problems (at least one).
    fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    /// Always `false`: the list is never empty.
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each problem changed by `f` (the list stays non-empty).
    pub(crate) fn map<F>(self, f: impl FnMut(E) -> F) -> Errors<F> {
        Errors(self.0.into_iter().map(f).collect())
    }
}

impl<E: Report> fmt::Display for Errors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            e.report(f)?;
        }
        Ok(())
    }
}

impl<E: Report + fmt::Debug> std::error::Error for Errors<E> {}

impl<E> IntoIterator for Errors<E> {
    type Item = E;
    type IntoIter = std::vec::IntoIter<E>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, E> IntoIterator for &'a Errors<E> {
    type Item = &'a E;
    type IntoIter = std::slice::Iter<'a, E>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Plain(&'static str);

    impl fmt::Display for Plain {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Report for Plain {}

    #[derive(Debug)]
    struct Excerpt(&'static str);

    impl fmt::Display for Excerpt {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Report for Excerpt {
        fn report(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}\n  | more", self.0)
        }
    }

    #[test]
    fn never_empty_and_one_problem_per_line() {
        assert!(Errors::<Plain>::from_vec(Vec::new()).is_none());
        let Some(errors) = Errors::from_vec(vec![Plain("a.yaml:1:2: x"), Plain("b.yaml:3:4: y")])
        else {
            panic!("two errors make a list");
        };
        assert_eq!((errors.len(), errors.is_empty()), (2, false));
        assert_eq!(errors.to_string(), "a.yaml:1:2: x\nb.yaml:3:4: y");
        assert_eq!(Errors::one(Plain("z")).to_string(), "z");
    }

    #[test]
    fn a_kind_can_report_more_than_its_display() {
        let errors = Errors::one(Excerpt("a")).map(|_| Excerpt("b"));
        assert_eq!(errors.to_string(), "b\n  | more");
        assert_eq!(errors.errors()[0].to_string(), "b");
    }
}
