//! Turns a panic inside a third-party decoder into an error, quietly.
//!
//! The `tiff`, `png` and BMP decoders are not ours; a malformed file can make one panic (the
//! `tiff` crate asserts on tiled planar files). [`catch`] runs a decoder under `catch_unwind` so
//! that a panic becomes one error naming the file, `--skip-bad` can skip it, and the parallel
//! batch loader keeps going. While a guarded call runs on a thread, the panic hook records the
//! message instead of printing it (other threads and other panics keep the previous hook).

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if GUARDED.get() {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            MESSAGE.set(Some(format!("{msg}{at}")));
        } else {
            previous(info);
        }
    }));
}

/// Runs `f`; a panic inside it becomes `Err("<what> panicked: <message>")`.
pub fn catch<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(install_hook);
    let outer = GUARDED.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(outer);
    result.map_err(|_| {
        let msg = MESSAGE.take().unwrap_or_else(|| "no message".into());
        format!("{what} panicked ({msg}); this is a decoder bug, please report the file")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let r: Result<(), String> = catch("the test decoder", || panic!("boom {}", 7));
        let e = r.unwrap_err();
        assert!(
            e.starts_with("the test decoder panicked (boom 7 at "),
            "{e}"
        );
        assert_eq!(catch("x", || 5).unwrap(), 5);
        // Nested guards restore the outer state.
        let inner = catch("outer", || catch("inner", || panic!("deep")).unwrap_err()).unwrap();
        assert!(inner.contains("inner panicked (deep"), "{inner}");
    }
}
