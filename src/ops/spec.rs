//! The vocabulary of the operation table: what an operation entry
//! ([`OpSpec`]) and an argument ([`ArgSpec`], [`ArgKind`]) say, an entry's
//! syntax and usage text, parsed argument values ([`Value`]) and the checked
//! accessors builders read them with (`Args`), and the errors of a chain
//! ([`SpecError`]). The table itself is `SPECS` (`table.rs`); the grammar
//! that reads a chain against it is in `parse.rs`.

use serde::Serialize;

use super::action::Action;

/// The most operations one chain may hold.
pub const MAX_CHAIN: usize = 16;
/// The largest width or height a size argument may give.
pub const MAX_SIDE: i64 = 65_535;

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ArgKind {
    Integer {
        minimum: i64,
        maximum: i64,
    },
    OddInteger {
        minimum: i64,
        maximum: i64,
    },
    Number {
        minimum: f64,
        maximum: f64,
    },
    /// `WxH`, each side 1..=MAX_SIDE.
    Size,
    Choice {
        choices: &'static [&'static str],
    },
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ArgSpec {
    pub name: &'static str,
    #[serde(flatten)]
    pub kind: ArgKind,
    /// `None`: the argument must be given.
    pub default: Option<&'static str>,
    pub description: &'static str,
    /// The separator written before this argument in canonical form
    /// (`:`, or `,` between the numbers of one argument group).
    pub lead: char,
}

/// Makes an operation's [`Action`] from its argument values, which the
/// grammar has already checked against the entry's `args`.
pub(super) type Builder = fn(&Args<'_>) -> Result<Action, SpecError>;

/// One operation: what `GET /filters` shows of it (the serialised fields),
/// and how its checked arguments become what it does (`builder`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OpSpec {
    pub name: &'static str,
    pub category: &'static str,
    pub pillow: &'static str,
    pub description: &'static str,
    pub example: &'static str,
    pub args: &'static [ArgSpec],
    #[serde(skip)]
    pub(super) builder: Builder,
}

impl OpSpec {
    /// The action for `values`, one per entry of `args` (defaults filled in).
    pub(super) fn build(&self, values: &[Value]) -> Result<Action, SpecError> {
        (self.builder)(&Args { spec: self, values })
    }

    /// `unsharp_mask[:RADIUS[,PERCENT[,THRESHOLD]]]`
    pub fn syntax(&self) -> String {
        let mut out = self.name.to_string();
        let mut closing = 0;
        for arg in self.args {
            if arg.default.is_some() {
                out.push('[');
                closing += 1;
            }
            out.push(arg.lead);
            out.push_str(&arg.name.to_ascii_uppercase());
        }
        out.push_str(&"]".repeat(closing));
        out
    }

    /// The syntax plus each argument's type, range and default.
    pub fn usage(&self) -> String {
        let mut parts = vec![self.syntax()];
        for arg in self.args {
            let range = match arg.kind {
                ArgKind::Integer { minimum, maximum } => format!("integer {minimum}..{maximum}"),
                ArgKind::OddInteger { minimum, maximum } => {
                    format!("odd integer {minimum}..{maximum}")
                }
                ArgKind::Number { minimum, maximum } => format!("number {minimum}..{maximum}"),
                ArgKind::Size => format!("WIDTHxHEIGHT, each 1..{MAX_SIDE}"),
                ArgKind::Choice { choices } => format!("one of {}", choices.join("|")),
            };
            let default = arg
                .default
                .map(|d| format!(", default {d}"))
                .unwrap_or_default();
            parts.push(format!(
                "{} {range}{default}",
                arg.name.to_ascii_uppercase()
            ));
        }
        parts.join("; ")
    }
}

/// A parsed argument value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Num(f64),
    Size(usize, usize),
    Word(&'static str),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            // Shortest text that parses back to the same f64.
            Value::Num(v) => write!(f, "{v}"),
            Value::Size(w, h) => write!(f, "{w}x{h}"),
            Value::Word(w) => f.write_str(w),
        }
    }
}

/// One operation's argument values as its builder sees them, read by
/// argument name. Each accessor checks that the value is of the kind asked
/// for and names the operation and the argument when it is not: the grammar
/// only makes values of the kind the entry declares, so such an error means
/// the entry and its builder disagree, which the table's tests catch.
pub(super) struct Args<'a> {
    spec: &'a OpSpec,
    values: &'a [Value],
}

impl Args<'_> {
    /// An integer argument, in the type the action holds.
    pub fn int<T: TryFrom<i64>>(&self, name: &str) -> Result<T, SpecError> {
        match self.get(name)? {
            Value::Int(v) => T::try_from(v).map_err(|_| {
                self.bad(format!(
                    "{} is out of range for {}, got {v}",
                    name.to_ascii_uppercase(),
                    std::any::type_name::<T>()
                ))
            }),
            other => Err(self.wrong_kind(name, "an integer", other)),
        }
    }

    /// A number argument.
    pub fn num(&self, name: &str) -> Result<f64, SpecError> {
        match self.get(name)? {
            Value::Num(v) => Ok(v),
            other => Err(self.wrong_kind(name, "a number", other)),
        }
    }

    /// A `WIDTHxHEIGHT` argument.
    pub fn size(&self, name: &str) -> Result<(usize, usize), SpecError> {
        match self.get(name)? {
            Value::Size(w, h) => Ok((w, h)),
            other => Err(self.wrong_kind(name, "WIDTHxHEIGHT", other)),
        }
    }

    /// A choice argument, turned into what it means by `meaning`, which
    /// answers `None` for a word it does not know: that is an error, never
    /// a default.
    pub fn choice<T>(&self, name: &str, meaning: fn(&str) -> Option<T>) -> Result<T, SpecError> {
        match self.get(name)? {
            Value::Word(w) => meaning(w).ok_or_else(|| {
                self.bad(format!(
                    "{} {w:?} is not a choice this operation knows",
                    name.to_ascii_uppercase()
                ))
            }),
            other => Err(self.wrong_kind(name, "a word", other)),
        }
    }

    fn get(&self, name: &str) -> Result<Value, SpecError> {
        let Some(i) = self.spec.args.iter().position(|a| a.name == name) else {
            return Err(self.bad(format!("has no argument {:?}", name.to_ascii_uppercase())));
        };
        self.values
            .get(i)
            .copied()
            .ok_or_else(|| self.bad(format!("{} is required", name.to_ascii_uppercase())))
    }

    fn wrong_kind(&self, name: &str, expected: &str, got: Value) -> SpecError {
        self.bad(format!(
            "{} must be {expected}, got {got}",
            name.to_ascii_uppercase()
        ))
    }

    fn bad(&self, problem: String) -> SpecError {
        SpecError::BadArgument {
            op: self.spec.name,
            problem,
            usage: self.spec.usage(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("no operation given")]
    Empty,
    #[error("empty operation in {chain:?} (two commas in a row, or a trailing comma)")]
    EmptyPiece { chain: String },
    #[error("unknown operation {given:?}; known operations: {known}")]
    Unknown { given: String, known: String },
    #[error("{op}: {problem}. Usage: {usage}")]
    BadArgument {
        op: &'static str,
        problem: String,
        usage: String,
    },
    #[error("{count} operations in one chain; at most {MAX_CHAIN} are allowed")]
    TooLong { count: usize },
}

impl SpecError {
    /// The operation the error is about, when there is one.
    pub fn operation(&self) -> Option<&str> {
        match self {
            SpecError::Unknown { given, .. } => Some(given),
            SpecError::BadArgument { op, .. } => Some(op),
            _ => None,
        }
    }

    pub fn usage(&self) -> Option<&str> {
        match self {
            SpecError::BadArgument { usage, .. } => Some(usage),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FAKE: OpSpec = OpSpec {
        name: "fake",
        category: "test",
        pillow: "",
        description: "",
        example: "fake",
        args: &[
            ArgSpec {
                name: "count",
                kind: ArgKind::Integer {
                    minimum: 0,
                    maximum: 1000,
                },
                default: None,
                description: "",
                lead: ':',
            },
            ArgSpec {
                name: "amount",
                kind: ArgKind::Number {
                    minimum: 0.0,
                    maximum: 1.0,
                },
                default: None,
                description: "",
                lead: ',',
            },
            ArgSpec {
                name: "box",
                kind: ArgKind::Size,
                default: None,
                description: "",
                lead: ':',
            },
            ArgSpec {
                name: "way",
                kind: ArgKind::Choice {
                    choices: &["up", "down"],
                },
                default: Some("up"),
                description: "",
                lead: ':',
            },
        ],
        builder: |_| Ok(Action::Invert),
    };

    fn up_or_down(word: &str) -> Option<bool> {
        match word {
            "up" => Some(true),
            "down" => Some(false),
            _ => None,
        }
    }

    /// The problem text of a `BadArgument` about `fake`.
    fn problem(result: Result<impl std::fmt::Debug, SpecError>) -> String {
        match result.unwrap_err() {
            SpecError::BadArgument { op, problem, usage } => {
                assert_eq!(op, "fake");
                assert_eq!(usage, FAKE.usage());
                problem
            }
            other => panic!("not a bad argument: {other}"),
        }
    }

    #[test]
    fn accessors_give_values_of_the_declared_kind() {
        let values = [
            Value::Int(300),
            Value::Num(0.25),
            Value::Size(4, 3),
            Value::Word("down"),
        ];
        let a = Args {
            spec: &FAKE,
            values: &values,
        };
        assert_eq!(a.int::<u16>("count"), Ok(300));
        assert_eq!(a.int::<i64>("count"), Ok(300));
        assert_eq!(a.num("amount"), Ok(0.25));
        assert_eq!(a.size("box"), Ok((4, 3)));
        assert_eq!(a.choice("way", up_or_down), Ok(false));
        assert!(FAKE.build(&values).is_ok());
    }

    #[test]
    fn accessors_refuse_the_wrong_kind_naming_the_argument() {
        let values = [
            Value::Num(2.0),
            Value::Int(1),
            Value::Word("up"),
            Value::Size(1, 1),
        ];
        let a = Args {
            spec: &FAKE,
            values: &values,
        };
        assert_eq!(
            problem(a.int::<i64>("count")),
            "COUNT must be an integer, got 2"
        );
        assert_eq!(problem(a.num("amount")), "AMOUNT must be a number, got 1");
        assert_eq!(problem(a.size("box")), "BOX must be WIDTHxHEIGHT, got up");
        assert_eq!(
            problem(a.choice("way", up_or_down)),
            "WAY must be a word, got 1x1"
        );
    }

    #[test]
    fn accessors_refuse_what_the_action_cannot_hold_or_mean() {
        let values = [
            Value::Int(300),
            Value::Num(0.5),
            Value::Size(1, 1),
            Value::Word("sideways"),
        ];
        let a = Args {
            spec: &FAKE,
            values: &values,
        };
        assert!(problem(a.int::<u8>("count")).starts_with("COUNT is out of range for u8"));
        assert_eq!(
            problem(a.choice("way", up_or_down)),
            "WAY \"sideways\" is not a choice this operation knows"
        );
        assert_eq!(problem(a.num("speed")), "has no argument \"SPEED\"");
        let short = Args {
            spec: &FAKE,
            values: &values[..1],
        };
        assert_eq!(problem(short.size("box")), "BOX is required");
    }
}
