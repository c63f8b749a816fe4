//! A seeded generator of CEL expressions for the differential tests against Cerbos:
//! well-typed expressions of a requested type (literals, request fields, attributes and the
//! functions of every library Cerbos enables, including values at the edges: overflows,
//! out-of-range indexes, bad conversions, extreme timestamps and durations), and
//! deliberately mistyped ones (calls with arguments of random types and counts, unknown
//! functions, invalid literals, format verbs given the wrong type).

use crate::api_diff::Rng;

/// The types the generator produces expressions of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum T {
    Int,
    Uint,
    Double,
    Str,
    Bool,
    Bytes,
    ListInt,
    ListStr,
    Map,
    Ts,
    Dur,
    Dyn,
}

/// Every type the generator produces.
pub(crate) const ALL: &[T] = &[
    T::Int,
    T::Uint,
    T::Double,
    T::Str,
    T::Bool,
    T::Bytes,
    T::ListInt,
    T::ListStr,
    T::Map,
    T::Ts,
    T::Dur,
    T::Dyn,
];

/// The resource attributes the expressions read (`R.attr.*`), as JSON.
pub(crate) const RESOURCE_ATTR: &str = r#"{"n": 3, "f": 2.5, "s": "abc", "b": true, "l": [1, 2, 3], "m": {"k": "v"}, "huge": 9007199254740993, "neg": -1, "z": 0, "path": "/a/b.txt", "ip": "10.1.2.3"}"#;

pub(crate) struct Gen<'a> {
    pub(crate) rng: &'a mut Rng,
}

impl Gen<'_> {
    fn pick(&mut self, items: &[&str]) -> String {
        (*self.rng.pick(items)).to_string()
    }

    fn any_type(&mut self) -> T {
        *self.rng.pick(ALL)
    }

    /// An expression of type `t`, at most `depth` calls deep.
    pub(crate) fn typed(&mut self, t: T, depth: usize) -> String {
        if depth == 0 || self.rng.chance(30) {
            return self.leaf(t);
        }
        let d = depth - 1;
        match t {
            T::Int => match self.rng.below(16) {
                0 => format!("{} + {}", self.typed(T::Int, d), self.typed(T::Int, d)),
                1 => format!("{} - {}", self.typed(T::Int, d), self.typed(T::Int, d)),
                2 => format!("({}) * {}", self.typed(T::Int, d), self.typed(T::Int, d)),
                3 => format!("{} / {}", self.typed(T::Int, d), self.typed(T::Int, d)),
                4 => format!("{} % {}", self.typed(T::Int, d), self.typed(T::Int, d)),
                5 => format!("-({})", self.typed(T::Int, d)),
                6 => format!("size({})", self.typed(T::Str, d)),
                7 => format!("{}.size()", self.typed(T::ListInt, d)),
                8 => format!(
                    "{}.indexOf({})",
                    self.typed(T::Str, d),
                    self.typed(T::Str, d)
                ),
                9 => {
                    let from = *self
                        .rng
                        .pick(&[T::Double, T::Uint, T::Str, T::Dur, T::Ts, T::Dyn]);
                    format!("int({})", self.typed(from, d))
                }
                10 => format!("math.abs({})", self.typed(T::Int, d)),
                11 => {
                    let f = self.pick(&[
                        "getHours",
                        "getMinutes",
                        "getDayOfWeek",
                        "getFullYear",
                        "getMonth",
                        "getDate",
                        "getDayOfYear",
                        "getMilliseconds",
                    ]);
                    format!("{}.{f}()", self.typed(T::Ts, d))
                }
                12 => format!("{}.getSeconds()", self.typed(T::Dur, d)),
                13 => format!("{}[{}]", self.typed(T::ListInt, d), self.typed(T::Int, d)),
                14 => format!(
                    "math.greatest({}, {})",
                    self.typed(T::Int, d),
                    self.typed(T::Int, d)
                ),
                _ => format!(
                    "math.bitShiftLeft({}, {})",
                    self.typed(T::Int, d),
                    self.leaf(T::Int)
                ),
            },
            T::Uint => match self.rng.below(6) {
                0 => format!("{} + {}", self.typed(T::Uint, d), self.typed(T::Uint, d)),
                1 => format!("{} - {}", self.typed(T::Uint, d), self.typed(T::Uint, d)),
                2 => format!("{} * {}", self.typed(T::Uint, d), self.typed(T::Uint, d)),
                3 => format!("{} / {}", self.typed(T::Uint, d), self.typed(T::Uint, d)),
                4 => {
                    let from = *self.rng.pick(&[T::Int, T::Double, T::Str]);
                    format!("uint({})", self.typed(from, d))
                }
                _ => format!("{} % {}", self.typed(T::Uint, d), self.typed(T::Uint, d)),
            },
            T::Double => match self.rng.below(9) {
                0 => format!(
                    "{} + {}",
                    self.typed(T::Double, d),
                    self.typed(T::Double, d)
                ),
                1 => format!(
                    "{} * {}",
                    self.typed(T::Double, d),
                    self.typed(T::Double, d)
                ),
                2 => format!(
                    "{} / {}",
                    self.typed(T::Double, d),
                    self.typed(T::Double, d)
                ),
                3 => format!("-({})", self.typed(T::Double, d)),
                4 => {
                    let from = *self.rng.pick(&[T::Int, T::Uint, T::Str, T::Dyn]);
                    format!("double({})", self.typed(from, d))
                }
                5 => format!("math.sqrt({})", self.typed(T::Double, d)),
                6 => {
                    let f = self.pick(&["math.ceil", "math.floor", "math.round", "math.trunc"]);
                    format!("{f}({})", self.typed(T::Double, d))
                }
                7 => format!(
                    "{} - {}",
                    self.typed(T::Double, d),
                    self.typed(T::Double, d)
                ),
                _ => format!("math.sign({})", self.typed(T::Double, d)),
            },
            T::Str => match self.rng.below(18) {
                0 => format!("{} + {}", self.typed(T::Str, d), self.typed(T::Str, d)),
                1 => {
                    let from = self.any_type();
                    format!("string({})", self.typed(from, d))
                }
                2 => format!(
                    "{}.substring({})",
                    self.typed(T::Str, d),
                    self.typed(T::Int, d)
                ),
                3 => format!(
                    "{}.substring({}, {})",
                    self.typed(T::Str, d),
                    self.leaf(T::Int),
                    self.leaf(T::Int)
                ),
                4 => format!(
                    "{}.charAt({})",
                    self.typed(T::Str, d),
                    self.typed(T::Int, d)
                ),
                5 => {
                    let f = self.pick(&["lowerAscii", "upperAscii", "trim", "reverse"]);
                    format!("{}.{f}()", self.typed(T::Str, d))
                }
                6 => format!(
                    "{}.replace({}, {})",
                    self.typed(T::Str, d),
                    self.leaf(T::Str),
                    self.leaf(T::Str)
                ),
                7 => {
                    let (template, args) = self.format_args(d, true);
                    format!("{template}.format([{args}])")
                }
                8 => format!("{}.join(\",\")", self.typed(T::ListStr, d)),
                9 => format!("strings.quote({})", self.typed(T::Str, d)),
                10 => {
                    let f = self.pick(&["basePath", "dirPath", "extPath", "volumeName"]);
                    format!("{f}({})", self.typed(T::Str, d))
                }
                11 => format!("joinPath({})", self.typed(T::ListStr, d)),
                12 => format!(
                    "relPath({}, {})",
                    self.typed(T::Str, d),
                    self.typed(T::Str, d)
                ),
                13 => format!("base64.encode({})", self.typed(T::Bytes, d)),
                14 => format!("{}[{}]", self.typed(T::ListStr, d), self.typed(T::Int, d)),
                15 => format!("string({}) + R.id", self.typed(T::Ts, d)),
                16 => format!("string({})", self.typed(T::Dur, d)),
                _ => format!("P.id + {}", self.typed(T::Str, d)),
            },
            T::Bool => match self.rng.below(18) {
                0 => {
                    let x = *self.rng.pick(&[
                        T::Int,
                        T::Str,
                        T::Double,
                        T::ListInt,
                        T::Map,
                        T::Dyn,
                        T::Ts,
                    ]);
                    format!("{} == {}", self.typed(x, d), self.typed(x, d))
                }
                1 => {
                    let x = *self
                        .rng
                        .pick(&[T::Int, T::Str, T::Double, T::Dur, T::Ts, T::Uint]);
                    let op = self.pick(&["<", "<=", ">", ">=", "!="]);
                    format!("{} {op} {}", self.typed(x, d), self.typed(x, d))
                }
                2 => format!("{} && {}", self.typed(T::Bool, d), self.typed(T::Bool, d)),
                3 => format!("{} || {}", self.typed(T::Bool, d), self.typed(T::Bool, d)),
                4 => format!("!({})", self.typed(T::Bool, d)),
                5 => {
                    let f = self.pick(&["startsWith", "endsWith", "contains"]);
                    format!("{}.{f}({})", self.typed(T::Str, d), self.typed(T::Str, d))
                }
                6 => {
                    let p = self.pick(&["\"^a\"", "\"b+\"", "\"[0-9]+\"", "\"^$\"", "\"(?i)ABC\""]);
                    format!("{}.matches({p})", self.typed(T::Str, d))
                }
                7 => format!("{} in {}", self.typed(T::Int, d), self.typed(T::ListInt, d)),
                8 => format!("has(R.attr.{})", self.pick(&["n", "x", "m", "s"])),
                9 => {
                    let q = self.pick(&["all", "exists", "exists_one"]);
                    format!(
                        "{}.{q}(x, x > {})",
                        self.typed(T::ListInt, d),
                        self.leaf(T::Int)
                    )
                }
                10 => format!(
                    "pathHasPrefix({}, {})",
                    self.typed(T::Str, d),
                    self.typed(T::Str, d)
                ),
                11 => format!("isIP({})", self.typed(T::Str, d)),
                12 => format!("math.isInf({})", self.typed(T::Double, d)),
                13 => format!(
                    "hasIntersection({}, {})",
                    self.typed(T::ListInt, d),
                    self.typed(T::ListInt, d)
                ),
                14 => format!(
                    "{}.isSubset({})",
                    self.typed(T::ListStr, d),
                    self.typed(T::ListStr, d)
                ),
                15 => format!(
                    "cidr(\"10.0.0.0/8\").containsIP({})",
                    self.pick(&[
                        "ip(\"10.1.2.3\")",
                        "\"10.1.2.3\"",
                        "\"192.168.0.1\"",
                        "R.attr.ip"
                    ])
                ),
                16 => format!(
                    "{} ? {} : {}",
                    self.typed(T::Bool, d),
                    self.typed(T::Bool, d),
                    self.typed(T::Bool, d)
                ),
                _ => format!("bool({})", self.typed(T::Str, d)),
            },
            T::Bytes => match self.rng.below(3) {
                0 => format!("bytes({})", self.typed(T::Str, d)),
                1 => format!("{} + {}", self.typed(T::Bytes, d), self.typed(T::Bytes, d)),
                _ => format!("base64.decode({})", self.typed(T::Str, d)),
            },
            T::ListInt => match self.rng.below(11) {
                0 => format!("[{}, {}]", self.typed(T::Int, d), self.typed(T::Int, d)),
                1 => format!(
                    "{} + {}",
                    self.typed(T::ListInt, d),
                    self.typed(T::ListInt, d)
                ),
                2 => format!(
                    "{}.map(x, x * {})",
                    self.typed(T::ListInt, d),
                    self.leaf(T::Int)
                ),
                3 => format!(
                    "{}.filter(x, x > {})",
                    self.typed(T::ListInt, d),
                    self.leaf(T::Int)
                ),
                4 => format!("lists.range({})", self.pick(&["0", "3", "-1"])),
                5 => format!(
                    "{}.slice({}, {})",
                    self.typed(T::ListInt, d),
                    self.leaf(T::Int),
                    self.leaf(T::Int)
                ),
                6 => {
                    let f = self.pick(&["reverse", "distinct", "sort"]);
                    format!("{}.{f}()", self.typed(T::ListInt, d))
                }
                7 => format!(
                    "{}.except({})",
                    self.typed(T::ListInt, d),
                    self.typed(T::ListInt, d)
                ),
                8 => format!(
                    "intersect({}, {})",
                    self.typed(T::ListInt, d),
                    self.typed(T::ListInt, d)
                ),
                9 => format!("{}.map(x, x + 1, x)", self.typed(T::ListInt, d)),
                _ => format!(
                    "[[{}], [{}]].flatten()",
                    self.typed(T::Int, d),
                    self.typed(T::Int, d)
                ),
            },
            T::ListStr => match self.rng.below(4) {
                0 => format!(
                    "{}.split({})",
                    self.typed(T::Str, d),
                    self.pick(&["\",\"", "\"\"", "\"b\""])
                ),
                1 => format!("[{}, {}]", self.typed(T::Str, d), self.typed(T::Str, d)),
                2 => format!("{}.sort()", self.typed(T::ListStr, d)),
                _ => format!("{}.map(x, x + \"!\")", self.typed(T::ListStr, d)),
            },
            T::Map => match self.rng.below(3) {
                0 => {
                    let (a, b) = (self.any_type(), self.any_type());
                    format!(
                        "{{\"a\": {}, \"b\": {}}}",
                        self.typed(a, d),
                        self.typed(b, d)
                    )
                }
                1 => format!("{{{}: {}}}", self.typed(T::Str, d), self.typed(T::Int, d)),
                _ => format!("{{\"k\": {}}}", self.typed(T::ListStr, d)),
            },
            T::Ts => match self.rng.below(4) {
                0 => format!("{} + {}", self.typed(T::Ts, d), self.typed(T::Dur, d)),
                1 => format!("{} - {}", self.typed(T::Ts, d), self.typed(T::Dur, d)),
                2 => format!("timestamp({})", self.typed(T::Int, d)),
                _ => format!("timestamp({})", self.typed(T::Str, d)),
            },
            T::Dur => match self.rng.below(4) {
                0 => format!("{} + {}", self.typed(T::Dur, d), self.typed(T::Dur, d)),
                1 => format!("{} - {}", self.typed(T::Ts, d), self.typed(T::Ts, d)),
                2 => format!("duration({})", self.typed(T::Str, d)),
                _ => format!("{} - {}", self.typed(T::Dur, d), self.typed(T::Dur, d)),
            },
            T::Dyn => match self.rng.below(4) {
                0 => format!(
                    "R.attr.{}",
                    self.pick(&["n", "f", "s", "b", "l", "m", "huge", "neg", "z", "x"])
                ),
                1 => format!("dyn({})", {
                    let x = self.any_type();
                    self.typed(x, d)
                }),
                2 => format!("R.attr.l[{}]", self.typed(T::Int, d)),
                _ => format!("cel.bind(v, {}, [v, v])", self.typed(T::Int, d)),
            },
        }
    }

    fn leaf(&mut self, t: T) -> String {
        let items: &[&str] = match t {
            T::Int => &[
                "0",
                "1",
                "-3",
                "42",
                "7",
                "9223372036854775807",
                "-9223372036854775808",
                "R.attr.n == 3 ? 2 : 5",
            ],
            T::Uint => &["0u", "1u", "5u", "18446744073709551615u"],
            T::Double => &[
                "0.0", "-0.0", "1.5", "-2.25", "1e308", "1e-300", "3.0", "0.1",
            ],
            T::Str => &[
                "\"\"",
                "\"a\"",
                "\"abc\"",
                "\"Hello World\"",
                "\"/a/b.txt\"",
                "\"1.5\"",
                "\"12\"",
                "\"-7\"",
                "\"a,b,c\"",
                "\"2021-04-20T10:00:20Z\"",
                "\"1h30m\"",
                "\"true\"",
                "R.id",
                "P.id",
                "R.kind",
                "\"ünï\"",
            ],
            T::Bool => &["true", "false", "R.attr.b == true", "P.roles.size() > 0"],
            T::Bytes => &["b\"abc\"", "b\"\"", "b\"\\xff\""],
            T::ListInt => &["[]", "[1, 2, 3]", "[3, 1, 2, 1]", "[0]"],
            T::ListStr => &["[]", "[\"a\", \"b\"]", "P.roles", "[\"b\", \"a\", \"b\"]"],
            T::Map => &["{}", "{\"x\": 1}", "R.attr.m", "{1: \"one\", 2: \"two\"}"],
            T::Ts => &[
                "timestamp(\"2021-04-20T10:00:20.021-05:00\")",
                "timestamp(\"0001-01-01T00:00:00Z\")",
                "timestamp(\"9999-12-31T23:59:59Z\")",
                "timestamp(\"2023-06-10T00:00:00.000000001Z\")",
            ],
            T::Dur => &[
                "duration(\"1h\")",
                "duration(\"-1.5s\")",
                "duration(\"0s\")",
                "duration(\"2562047h\")",
                "duration(\"100ms\")",
                "duration(\"0.000000001s\")",
            ],
            T::Dyn => &[
                "R.attr.n",
                "R.attr.s",
                "R.attr.huge",
                "R.attr.f",
                "R.attr.l",
                "R.attr.m",
                "R.attr.x",
            ],
        };
        self.pick(items)
    }

    /// A format string literal and its list of arguments (types chosen to fit the verbs
    /// when `fit`, at random otherwise).
    fn format_args(&mut self, d: usize, fit: bool) -> (String, String) {
        let verbs = ["%s", "%d", "%f", "%.2f", "%e", "%x", "%X", "%o", "%b", "%%"];
        let n = 1 + self.rng.below(2);
        let mut template = String::from("\"");
        let mut args = Vec::new();
        for i in 0..n {
            let v = *self.rng.pick(&verbs);
            template.push_str(&format!("<{i}>{v}"));
            if v == "%%" {
                continue;
            }
            let t = if fit {
                match v {
                    "%s" => *self.rng.pick(&[
                        T::Str,
                        T::Int,
                        T::ListInt,
                        T::Bool,
                        T::Map,
                        T::Double,
                        T::Ts,
                        T::Dur,
                    ]),
                    "%d" | "%o" => *self.rng.pick(&[T::Int, T::Uint]),
                    "%b" => *self.rng.pick(&[T::Int, T::Uint, T::Bool]),
                    "%x" | "%X" => *self.rng.pick(&[T::Int, T::Uint, T::Str, T::Bytes]),
                    _ => *self.rng.pick(&[T::Double, T::Int]),
                }
            } else {
                self.any_type()
            };
            args.push(self.typed(t, d));
        }
        template.push('"');
        if !fit && self.rng.chance(20) {
            args.push(self.leaf(T::Int));
        }
        (template, args.join(", "))
    }

    /// An expression that may well be refused at compile time.
    pub(crate) fn mistyped(&mut self) -> String {
        const CALLS: &[(&str, bool)] = &[
            ("size", false),
            ("size", true),
            ("startsWith", true),
            ("contains", true),
            ("timestamp", false),
            ("duration", false),
            ("int", false),
            ("string", false),
            ("inIPAddrRange", true),
            ("inIPAddrRange", false),
            ("matches", true),
            ("substring", true),
            ("charAt", true),
            ("indexOf", true),
            ("join", true),
            ("split", true),
            ("math.abs", false),
            ("math.sqrt", false),
            ("math.bitAnd", false),
            ("hasIntersection", false),
            ("except", true),
            ("lists.range", false),
            ("base64.encode", false),
            ("pathHasPrefix", false),
            ("getHours", true),
            ("now", false),
            ("timeSince", false),
            ("hierarchy", false),
            ("ip", false),
            ("sort", true),
            ("sets.contains", false),
            ("fooBar", false),
            ("nope", true),
            ("math.nope", false),
        ];
        match self.rng.below(5) {
            0 | 1 => {
                let (f, member) = *self.rng.pick(CALLS);
                let n = self.rng.below(3);
                let mut args: Vec<String> = (0..n)
                    .map(|_| {
                        let t = self.any_type();
                        self.typed(t, 1)
                    })
                    .collect();
                let call = if member {
                    let t = self.any_type();
                    let recv = self.typed(t, 1);
                    format!("({recv}).{f}({})", args.join(", "))
                } else {
                    if f == "math.nope" {
                        args.push("1".into());
                    }
                    format!("{f}({})", args.join(", "))
                };
                let cmp = self.any_type();
                format!("{call} == {}", self.leaf(cmp))
            }
            2 => {
                let (f, pool): (&str, &[&str]) = *self.rng.pick(&[
                    (
                        "timestamp",
                        &[
                            "\"2021-04-20\"",
                            "\"2021-04-20T10:00:00Z\"",
                            "\"x\"",
                            "\"\"",
                            "1",
                            "\"2021-13-01T00:00:00Z\"",
                            "\"10000-01-01T00:00:00Z\"",
                        ][..],
                    ),
                    (
                        "duration",
                        &[
                            "\"\"",
                            "\"1h\"",
                            "\"1x\"",
                            "\"-2.5s\"",
                            "\"1.2.3s\"",
                            "\"300000000000h\"",
                        ][..],
                    ),
                    (
                        "ip",
                        &[
                            "\"256.1.1.1\"",
                            "\"1.1.1.1\"",
                            "\"::1\"",
                            "\"1.1.1\"",
                            "\"01.1.1.1\"",
                            "\"1..1.1\"",
                            "\"1.1.1.1.1\"",
                            "\"a.b.c.d\"",
                            "\"bad\"",
                        ][..],
                    ),
                    (
                        "cidr",
                        &[
                            "\"bad\"",
                            "\"10.0.0.0/8\"",
                            "\"10.0.0.0/33\"",
                            "\"10.0.0/8\"",
                            "\"::/0\"",
                            "\"1.1.1.1/08\"",
                        ][..],
                    ),
                ]);
                format!("string({f}({})) != \"\"", self.pick(pool))
            }
            3 => {
                let (template, args) = self.format_args(1, false);
                format!("{template}.format([{args}]) != \"\"")
            }
            _ => {
                // A well-typed expression with one operand of another type swapped in.
                let t = self.any_type();
                let (a, b) = (self.typed(t, 2), {
                    let u = self.any_type();
                    self.typed(u, 1)
                });
                let op = self.pick(&["==", "+", "<", "in", "&&", "-"]);
                format!("{a} {op} {b}")
            }
        }
    }
}
