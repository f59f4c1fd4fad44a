//! The chain grammar, read against [`SPECS`]: splitting a chain into
//! operations, checking and converting each one's arguments (defaults filled
//! in) and writing its canonical text.
//!
//! Grammar: `op[:arg[<sep>arg...]]` joined by `,` into a chain, where `<sep>`
//! is `:` or `,`. A comma-separated piece that does not start a known
//! operation (a number, `fit`, `lanczos`…) continues the previous operation's
//! arguments, so `unsharp_mask:2,150,3,grayscale` reads as two operations.

use super::spec::{ArgKind, OpSpec, SpecError, Value, MAX_CHAIN, MAX_SIDE};
use super::table::SPECS;

fn find(name: &str) -> Option<&'static OpSpec> {
    SPECS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
}

/// Every operation's name, in table order.
pub fn names() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.name).collect()
}

fn unknown(given: &str) -> SpecError {
    SpecError::Unknown {
        given: given.to_string(),
        known: names().join(", "),
    }
}

/// Splits a chain into `(spec, raw arguments)` pieces (see the module docs).
pub fn split(text: &str) -> Result<Vec<(&'static OpSpec, Vec<String>)>, SpecError> {
    let mut ops: Vec<(&'static OpSpec, Vec<String>)> = Vec::new();
    if text.trim().is_empty() {
        return Err(SpecError::Empty);
    }
    for piece in text.split(',').map(str::trim) {
        if piece.is_empty() {
            return Err(SpecError::EmptyPiece {
                chain: text.to_string(),
            });
        }
        let mut parts = piece.split(':').map(str::trim);
        let head = parts.next().unwrap_or_default();
        let starts_op = head.starts_with(|c: char| c.is_ascii_alphabetic());
        match (starts_op, find(head), ops.last_mut()) {
            (true, Some(spec), _) => ops.push((spec, parts.map(str::to_string).collect())),
            // A word that is not an operation may be the previous one's choice argument.
            (true, None, Some((spec, args))) if takes_word(spec, args.len(), head) => {
                args.push(head.to_string());
                args.extend(parts.map(str::to_string));
            }
            (true, None, _) => return Err(unknown(head)),
            (false, _, Some((_, args))) => {
                args.push(head.to_string());
                args.extend(parts.map(str::to_string));
            }
            (false, _, None) => return Err(unknown(piece)),
        }
    }
    if ops.len() > MAX_CHAIN {
        return Err(SpecError::TooLong { count: ops.len() });
    }
    Ok(ops)
}

fn takes_word(spec: &OpSpec, given: usize, word: &str) -> bool {
    spec.args.iter().skip(given).any(|a| match a.kind {
        ArgKind::Choice { choices } => choices.iter().any(|c| c.eq_ignore_ascii_case(word)),
        _ => false,
    })
}

/// Checks and converts one operation's arguments, defaults filled in.
pub fn values(spec: &'static OpSpec, raw: &[String]) -> Result<Vec<Value>, SpecError> {
    let bad = |problem: String| SpecError::BadArgument {
        op: spec.name,
        problem,
        usage: spec.usage(),
    };
    if raw.len() > spec.args.len() {
        return Err(bad(match spec.args.len() {
            0 => format!("takes no arguments, got {:?}", raw.join(":")),
            n => format!("takes at most {n} argument(s), got {}", raw.len()),
        }));
    }
    let mut out = Vec::with_capacity(spec.args.len());
    let mut next = 0;
    for (i, a) in spec.args.iter().enumerate() {
        let mut given = raw.get(next).map(String::as_str);
        // A choice word may skip optional choices before it:
        // `resize:800x600:lanczos` means mode exact (the default), lanczos.
        if let (Some(word), ArgKind::Choice { choices }, Some(_)) = (given, a.kind, a.default) {
            let fits_here = choices.iter().any(|c| c.eq_ignore_ascii_case(word));
            if !fits_here && takes_word(spec, i + 1, word) {
                given = None;
            } else {
                next += 1;
            }
        } else {
            next += 1;
        }
        let given = given.filter(|s| !s.is_empty());
        let Some(text) = given.or(a.default) else {
            return Err(bad(format!("{} is required", a.name.to_ascii_uppercase())));
        };
        let name = a.name.to_ascii_uppercase();
        let value = match a.kind {
            ArgKind::Integer { minimum, maximum } | ArgKind::OddInteger { minimum, maximum } => {
                let v: i64 = text
                    .parse()
                    .map_err(|_| bad(format!("{name} must be an integer, got {text:?}")))?;
                if !(minimum..=maximum).contains(&v) {
                    return Err(bad(format!(
                        "{name} must be in {minimum}..{maximum}, got {v}"
                    )));
                }
                if matches!(a.kind, ArgKind::OddInteger { .. }) && v % 2 == 0 {
                    return Err(bad(format!("{name} must be odd, got {v}")));
                }
                Value::Int(v)
            }
            ArgKind::Number { minimum, maximum } => {
                let v: f64 = text
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| bad(format!("{name} must be a number, got {text:?}")))?;
                if !(minimum..=maximum).contains(&v) {
                    return Err(bad(format!(
                        "{name} must be in {minimum}..{maximum}, got {v}"
                    )));
                }
                // -0 and 0 mean the same; keep the canonical text free of "-0".
                Value::Num(if v == 0.0 { 0.0 } else { v })
            }
            ArgKind::Size => {
                let parsed = text
                    .to_ascii_lowercase()
                    .split_once('x')
                    .and_then(|(w, h)| {
                        Some((w.trim().parse::<i64>().ok()?, h.trim().parse::<i64>().ok()?))
                    });
                match parsed {
                    Some((w, h)) if (1..=MAX_SIDE).contains(&w) && (1..=MAX_SIDE).contains(&h) => {
                        Value::Size(w as usize, h as usize)
                    }
                    _ => {
                        return Err(bad(format!(
                        "{name} must be WIDTHxHEIGHT with each side in 1..{MAX_SIDE}, got {text:?}"
                    )))
                    }
                }
            }
            ArgKind::Choice { choices } => {
                match choices.iter().find(|c| c.eq_ignore_ascii_case(text)) {
                    Some(c) => Value::Word(c),
                    None => {
                        return Err(bad(format!(
                            "{name} must be one of {}, got {text:?}",
                            choices.join("|")
                        )))
                    }
                }
            }
        };
        out.push(value);
    }
    if let Some(extra) = raw.get(next) {
        return Err(bad(format!("unexpected argument {extra:?}")));
    }
    Ok(out)
}

/// The canonical text of one operation: every argument written out.
pub fn canonical(spec: &OpSpec, values: &[Value]) -> String {
    let mut out = spec.name.to_string();
    for (a, v) in spec.args.iter().zip(values) {
        out.push(a.lead);
        out.push_str(&v.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<String>, SpecError> {
        split(text)?
            .into_iter()
            .map(|(spec, raw)| Ok(canonical(spec, &values(spec, &raw)?)))
            .collect()
    }

    #[test]
    fn chains_split_on_commas_and_keep_numeric_arguments() {
        assert_eq!(
            parse("resize:1280x720:fit,sharpen,grayscale").unwrap(),
            ["resize:1280x720:fit:bicubic", "sharpen", "grayscale"]
        );
        assert_eq!(
            parse("unsharp_mask:2,150,3,grayscale").unwrap(),
            ["unsharp_mask:2,150,3", "grayscale"]
        );
        assert_eq!(parse("crop:1,2,3,4").unwrap(), ["crop:1,2,3,4"]);
        assert_eq!(
            parse(" Gaussian_Blur : 1.5 ").unwrap(),
            ["gaussian_blur:1.5"]
        );
        assert_eq!(
            parse("resize:10x20,fill").unwrap(),
            ["resize:10x20:fill:bicubic"]
        );
        assert_eq!(parse("unsharp_mask").unwrap(), ["unsharp_mask:2,150,3"]);
        assert_eq!(parse("rotate:-0").unwrap(), ["rotate:0:nearest"]);
        assert_eq!(
            parse("resize:8x6:lanczos").unwrap(),
            ["resize:8x6:exact:lanczos"]
        );
        assert_eq!(
            parse("resize:8x6,fill,box").unwrap(),
            ["resize:8x6:fill:box"]
        );
        assert!(parse("resize:8x6:lanczos:fit").is_err());
    }

    #[test]
    fn errors_name_the_operation_and_its_usage() {
        let e = parse("blur,sepia").unwrap_err();
        assert_eq!(e.operation(), Some("sepia"));
        let e = parse("median:4").unwrap_err();
        assert_eq!(e.operation(), Some("median"));
        assert!(e.to_string().contains("must be odd"), "{e}");
        assert!(e.to_string().contains("median[:SIZE]"), "{e}");
        let e = parse("posterize").unwrap_err();
        assert!(e.to_string().contains("BITS is required"), "{e}");
        let e = parse("resize:0x10").unwrap_err();
        assert!(e.to_string().contains("WIDTHxHEIGHT"), "{e}");
        let e = parse("blur:3").unwrap_err();
        assert!(e.to_string().contains("takes no arguments"), "{e}");
        let e = parse("gaussian_blur:nan").unwrap_err();
        assert!(e.to_string().contains("must be a number"), "{e}");
        let e = parse("resize:10x10:fit:bicubic:extra").unwrap_err();
        assert!(e.to_string().contains("at most 3"), "{e}");
        assert!(matches!(parse(""), Err(SpecError::Empty)));
        assert!(matches!(parse("3"), Err(SpecError::Unknown { .. })));
        let long = vec!["blur"; MAX_CHAIN + 1].join(",");
        assert!(matches!(parse(&long), Err(SpecError::TooLong { .. })));
    }

    #[test]
    fn every_example_parses_and_every_name_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for spec in SPECS {
            assert!(seen.insert(spec.name), "{} twice", spec.name);
            parse(spec.example).unwrap_or_else(|e| panic!("{}: {e}", spec.example));
            if spec.args.iter().all(|a| a.default.is_some()) {
                values(spec, &[]).unwrap_or_else(|e| panic!("{} defaults: {e}", spec.name));
            }
        }
    }
}
