//! Shared by the integration tests that compare with peer fixtures.

use std::path::{Path, PathBuf};

/// `shared/peer-fixtures/SUB` beside the repository (`../shared/peer-fixtures` from its
/// root). The directory is read-only and present locally and in CI: a missing one fails
/// the test, it never skips it.
pub fn peer_fixtures(sub: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/peer-fixtures")
        .join(sub);
    assert!(
        dir.is_dir(),
        "peer fixtures missing: {} is not a directory (expected shared/peer-fixtures beside \
         the repository, as locally and in CI); these tests cannot pass without it",
        dir.display()
    );
    dir
}
