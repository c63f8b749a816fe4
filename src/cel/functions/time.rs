//! Timestamp and duration accessors of the CEL standard library, and Cerbos's
//! clock functions `now()` and `timeSince()`.
//!
//! As in Cerbos, a timestamp's accessors without a time zone read the timestamp in
//! UTC, whatever offset it was written with; with a time zone argument (`"UTC"`, an IANA name such
//! as `"America/Los_Angeles"`, or an offset such as `"-05:00"`) they read it there.

use std::str::FromStr;

use chrono::{Datelike, FixedOffset, NaiveDateTime, TimeDelta, Timelike};

use super::{FunctionRegistry, arity, no_overload};
use crate::cel::eval::{Activation, EvalError, duration_value};
use crate::cel::value::{Timestamp, Value};

pub(super) fn register(r: &mut FunctionRegistry) {
    r.receiver("getFullYear", get_full_year);
    r.receiver("getMonth", get_month);
    r.receiver("getDayOfYear", get_day_of_year);
    r.receiver("getDayOfMonth", get_day_of_month);
    r.receiver("getDate", get_date);
    r.receiver("getDayOfWeek", get_day_of_week);
    r.receiver("getHours", get_hours);
    r.receiver("getMinutes", get_minutes);
    r.receiver("getSeconds", get_seconds);
    r.receiver("getMilliseconds", get_milliseconds);
    r.global("now", now);
    r.both("timeSince", time_since);
}

/// A calendar or clock field of a timestamp (or a total of a duration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    FullYear,
    Month,
    DayOfYear,
    DayOfMonth,
    Date,
    DayOfWeek,
    Hours,
    Minutes,
    Seconds,
    Milliseconds,
}

macro_rules! accessor {
    ($fn_name:ident, $cel_name:literal, $part:expr) => {
        fn $fn_name(args: &[Value], _: &Activation) -> Result<Value, EvalError> {
            access($cel_name, $part, args)
        }
    };
}

accessor!(get_full_year, "getFullYear", Part::FullYear);
accessor!(get_month, "getMonth", Part::Month);
accessor!(get_day_of_year, "getDayOfYear", Part::DayOfYear);
accessor!(get_day_of_month, "getDayOfMonth", Part::DayOfMonth);
accessor!(get_date, "getDate", Part::Date);
accessor!(get_day_of_week, "getDayOfWeek", Part::DayOfWeek);
accessor!(get_hours, "getHours", Part::Hours);
accessor!(get_minutes, "getMinutes", Part::Minutes);
accessor!(get_seconds, "getSeconds", Part::Seconds);
accessor!(get_milliseconds, "getMilliseconds", Part::Milliseconds);

fn access(name: &str, part: Part, args: &[Value]) -> Result<Value, EvalError> {
    match args {
        [Value::Timestamp(t)] => Ok(Value::Int(calendar_part(part, &t.naive_utc()))),
        [Value::Timestamp(t), Value::String(tz)] => {
            Ok(Value::Int(calendar_part(part, &in_zone(t, tz)?)))
        }
        [Value::Duration(d)] => duration_part(part, *d).ok_or_else(|| no_overload(name, args)),
        _ => Err(no_overload(name, args)),
    }
}

fn calendar_part(part: Part, t: &NaiveDateTime) -> i64 {
    let v = match part {
        Part::FullYear => return i64::from(t.year()),
        Part::Month => t.month0(),
        Part::DayOfYear => t.ordinal0(),
        Part::DayOfMonth => t.day0(),
        Part::Date => t.day(),
        Part::DayOfWeek => t.weekday().num_days_from_sunday(),
        Part::Hours => t.hour(),
        Part::Minutes => t.minute(),
        Part::Seconds => t.second(),
        // chrono keeps a leap second as nanoseconds past 1e9.
        Part::Milliseconds => (t.nanosecond() % 1_000_000_000) / 1_000_000,
    };
    i64::from(v)
}

/// Totals of a duration, truncated toward zero (Go's `d.Hours()` and friends).
fn duration_part(part: Part, d: TimeDelta) -> Option<Value> {
    let v = match part {
        Part::Hours => d.num_hours(),
        Part::Minutes => d.num_minutes(),
        Part::Seconds => d.num_seconds(),
        Part::Milliseconds => d.num_milliseconds(),
        _ => return None,
    };
    Some(Value::Int(v))
}

/// The local date and time of `t` in the time zone `tz`, following cel-go: a value
/// containing `:` is an offset `[+|-]HH:MM`, anything else a zone name.
fn in_zone(t: &Timestamp, tz: &str) -> Result<NaiveDateTime, EvalError> {
    let Some(colon) = tz.find(':') else {
        return match tz {
            // Go reads "Local" as the server's zone; it is read as UTC here.
            "" | "UTC" | "Local" => Ok(t.naive_utc()),
            _ => chrono_tz::Tz::from_str(tz)
                .map(|zone| t.with_timezone(&zone).naive_local())
                .map_err(|_| EvalError::new(format!("unknown time zone {tz}"))),
        };
    };
    let atoi = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| EvalError::new(format!("strconv.Atoi: parsing {s:?}: invalid syntax")))
    };
    let hours = atoi(&tz[..colon])?;
    let minutes = atoi(&tz[colon + 1..])?;
    let total = if tz.starts_with('-') {
        hours.checked_mul(60).and_then(|h| h.checked_sub(minutes))
    } else {
        hours.checked_mul(60).and_then(|h| h.checked_add(minutes))
    };
    let offset = total
        .and_then(|m| m.checked_mul(60))
        .and_then(|s| i32::try_from(s).ok())
        .and_then(FixedOffset::east_opt)
        .ok_or_else(|| EvalError::new(format!("invalid time zone offset {tz}")))?;
    Ok(t.with_timezone(&offset).naive_local())
}

/// Cerbos's `now()`: the request's fixed clock.
fn now(args: &[Value], act: &Activation) -> Result<Value, EvalError> {
    arity("now", args, 0)?;
    Ok(Value::Timestamp(act.now()))
}

/// Cerbos's `ts.timeSince()` / `timeSince(ts)`: `now() - ts`.
fn time_since(args: &[Value], act: &Activation) -> Result<Value, EvalError> {
    match args {
        [Value::Timestamp(t)] => duration_value(act.now().signed_duration_since(*t)),
        _ => Err(no_overload("timeSince", args)),
    }
}

#[cfg(test)]
mod tests {
    use crate::cel::testing::{assert_true, eval};

    /// Issue 11, class 5: Cerbos 0.55 reads a timestamp in UTC when no time zone is given
    /// (`timestamp("2021-04-20T10:00:20.021-05:00").getHours()` is 15 in `cerbos repl`).
    #[test]
    fn issue_11_timestamp_accessors_default_to_utc() {
        // 2021-04-20T10:05:20.021-05:00 is 15:05:20.021 UTC on Tuesday, day 110 of the year;
        // 2021-12-31T22:30:00-05:00 is already 2022 in UTC.
        for src in [
            "timestamp('2021-04-20T10:05:20.021-05:00').getFullYear() == 2021",
            "timestamp('2021-04-20T10:05:20.021-05:00').getMonth() == 3",
            "timestamp('2021-04-20T10:05:20.021-05:00').getDate() == 20",
            "timestamp('2021-04-20T10:05:20.021-05:00').getDayOfMonth() == 19",
            "timestamp('2021-04-20T10:05:20.021-05:00').getDayOfWeek() == 2",
            "timestamp('2021-04-20T10:05:20.021-05:00').getDayOfYear() == 109",
            "timestamp('2021-04-20T10:05:20.021-05:00').getHours() == 15",
            "timestamp('2021-04-20T10:05:20.021-05:00').getMinutes() == 5",
            "timestamp('2021-04-20T10:05:20.021-05:00').getSeconds() == 20",
            "timestamp('2021-04-20T10:05:20.021-05:00').getMilliseconds() == 21",
            "timestamp('2021-04-20T10:00:20.021-05:00').getHours() == 15",
            "timestamp('2021-12-31T22:30:00-05:00').getFullYear() == 2022",
            "timestamp('2021-12-31T22:30:00-05:00').getMonth() == 0",
            "timestamp('2021-04-20T23:30:00+05:30').getHours() == 18",
        ] {
            assert_true(src);
        }
    }

    #[test]
    fn timestamp_accessors_with_time_zones() {
        for src in [
            "timestamp('2021-04-20T10:05:20Z').getHours('UTC') == 10",
            "timestamp('2021-04-20T10:05:20Z').getHours('') == 10",
            "timestamp('2021-04-20T10:05:20Z').getHours('-05:00') == 5",
            "timestamp('2021-04-20T10:05:20Z').getHours('+05:30') == 15",
            "timestamp('2021-04-20T10:05:20Z').getMinutes('+05:30') == 35",
            "timestamp('2021-04-20T10:05:20Z').getMinutes('-00:30') == 35",
            "timestamp('2021-04-20T10:05:20Z').getHours('05:00') == 15",
            "timestamp('2021-04-20T10:05:20Z').getHours('America/Los_Angeles') == 3",
            "timestamp('2021-01-20T10:05:20Z').getHours('America/Los_Angeles') == 2",
            "timestamp('2021-04-20T15:05:20Z').getDate('NZ') == 21",
            "timestamp('2021-12-31T23:00:00Z').getFullYear('Asia/Tokyo') == 2022",
        ] {
            assert_true(src);
        }
        for src in [
            "timestamp('2021-04-20T10:05:20Z').getHours('Mars/Olympus')",
            "timestamp('2021-04-20T10:05:20Z').getHours('x:00')",
            "timestamp('2021-04-20T10:05:20Z').getHours('+99:00')",
            "timestamp('2021-04-20T10:05:20Z').getHours('99999999999999999999:00')",
            "timestamp('2021-04-20T10:05:20Z').getHours(1)",
        ] {
            assert!(eval(src).is_err(), "{src}");
        }
    }

    #[test]
    fn duration_totals() {
        for src in [
            "duration('3750s').getHours() == 1",
            "duration('3750s').getMinutes() == 62",
            "duration('3750s').getSeconds() == 3750",
            "duration('3750s').getMilliseconds() == 3750000",
            "duration('-90m').getHours() == -1",
            "duration('1.5s').getMilliseconds() == 1500",
        ] {
            assert_true(src);
        }
        assert!(eval("duration('1h').getFullYear()").is_err());
        assert!(eval("duration('1h').getHours('UTC')").is_err());
    }

    #[test]
    fn clock_functions_use_the_request_time() {
        assert_true("now() == timestamp('2021-04-22T10:05:20.021-05:00')");
        assert_true("timestamp('2021-04-20T10:05:20.021-05:00').timeSince() == duration('48h')");
        assert_true("timeSince(timestamp('2021-04-22T10:05:20.021-05:00')) == duration('0s')");
        assert!(eval("now(1)").is_err());
        assert!(eval("'x'.timeSince()").is_err());
    }
}
