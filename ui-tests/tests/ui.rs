//! Locks the compile-time guarantees: each `fail/` case must fail with its blessed `.stderr`,
//! each `pass/` case must compile. Bless with `TRYBUILD=overwrite` on the pinned toolchain.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("fail/*.rs");
    t.pass("pass/*.rs");
}
