//! Conformance of the filesystem store (placeholder until the backend lands).
mod support;

#[test]
fn support_bytes_are_deterministic() {
    assert_eq!(support::bytes(1000, 5), support::bytes(1000, 5));
    assert_ne!(support::bytes(1000, 5), support::bytes(1000, 6));
}
