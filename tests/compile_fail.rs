//! The spec language's errors, one per file under `tests/ui/fail` with its reviewed
//! `.stderr`, and specs that must compile and run under `tests/ui/pass`.

#[test]
fn spec_errors_and_accepted_specs() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
