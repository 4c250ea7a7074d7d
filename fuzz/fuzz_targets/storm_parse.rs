//! Fuzz the Storm parser: any text must parse or fail with `BadSyntax`, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for result in [
        syn::cortex::storm::parse_query(&text).map(|_| ()),
        syn::cortex::storm::parse_lookup(&text).map(|_| ()),
        syn::cortex::storm::parse_eval(&text).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert_eq!(e.name, "BadSyntax", "{e}");
        }
    }
});
