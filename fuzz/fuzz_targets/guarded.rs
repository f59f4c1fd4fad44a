//! The panic policy of the fuzz targets. libFuzzer's hook aborts on every
//! panic, even one imgpipe's panic guard catches. A panic raised inside a
//! third-party decoder is what the guard is for: the upload is answered as
//! unreadable, which is the contract under test, so those are let through
//! to the guard. A panic anywhere else (imgpipe's own code, or one escaping
//! the guard) still aborts and is reported.

pub fn let_third_party_panics_reach_the_guard() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let third_party = info
                .location()
                .is_some_and(|at| at.file().contains("/.cargo/registry/"));
            if !third_party {
                fuzzer_hook(info);
            }
        }));
    });
}
