//! Code that may panic (a decoder on a hostile file, an operation on an odd
//! shape) runs under [`catch`], so a panic becomes an error with a message
//! instead of a crashed task or, on a rayon thread, an aborted process.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; a panic comes back as its message.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_text(payload.as_ref()))
}

/// The message a panic was raised with (`panic!("…")` carries a `&str` or a
/// `String`; anything else has no text).
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_their_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| -> u8 { panic!("static text") }),
            Err("static text".into())
        );
        let n = 3;
        assert_eq!(
            catch(|| -> u8 { panic!("formatted {n}") }),
            Err("formatted 3".into())
        );
        assert_eq!(
            catch(|| std::panic::panic_any(5u32)),
            Err("panic without a message".into())
        );
    }
}
