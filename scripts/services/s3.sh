# shellcheck shell=bash
# shellcheck disable=SC2154  # DIR, DATA: set by scripts/test-services
# The S3 server: s3s-fs (crates.io), which checks SigV4 signatures and checksums. A bucket is a
# directory of data/s3, an object a file. Sourced by scripts/test-services (its header lists the
# functions every file here defines).
#
# It is built from source once per machine (~4 min release build on 2 cores) into the state
# directory, outside the clone, so CI runs reuse it. tests/support/s3.rs also starts this binary
# on ports of its own.
#
# Overrides: PFM_TEST_S3_PORT (9100).

# Pinned version: bump deliberately; `install` reinstalls when it changes.
# 0.14.1 is the newest s3s-fs that builds on Rust 1.95 (0.15+ declare rust-version 1.96).
readonly S3S_FS_VERSION=0.14.1

readonly S3_HOST=127.0.0.1
S3_PORT=${PFM_TEST_S3_PORT:-9100}
readonly S3_ACCESS_KEY=test S3_SECRET_KEY=testsecret S3_REGION=us-east-1
readonly S3S_FS_BIN="$DIR/s3s-fs/bin/s3s-fs"

s3_url() { printf 'http://%s:%s' "$S3_HOST" "$S3_PORT"; }
s3_address() { s3_url; }
s3_listen() { printf '%s %s\n' "$S3_HOST" "$S3_PORT"; }
s3_env() {
    printf 'PFM_TEST_S3_ENDPOINT %s\n' "$(s3_url)"
    printf 'PFM_TEST_S3_ACCESS_KEY %s\n' "$S3_ACCESS_KEY"
    printf 'PFM_TEST_S3_SECRET_KEY %s\n' "$S3_SECRET_KEY"
    printf 'PFM_TEST_S3_REGION %s\n' "$S3_REGION"
}

s3_version() { printf 's3s-fs %s' "$S3S_FS_VERSION"; }
s3_is_current() { crate_installed s3s-fs s3s-fs "$S3S_FS_VERSION" s3s-fs; }

s3_install() {
    say "s3: cargo install s3s-fs $S3S_FS_VERSION (release build, ~4 min on 2 cores)"
    # The binary is only built with --features binary. --locked warns that spin 0.10.0 is
    # yanked; the build still succeeds.
    cargo_install s3s-fs cargo-target s3s-fs --version "$S3S_FS_VERSION" --features binary
}

s3_fresh() { fresh_data s3 s3; }

s3_start() {
    mkdir -p "$DATA/s3"
    launch s3 "$S3S_FS_BIN" --host "$S3_HOST" --port "$S3_PORT" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$DATA/s3"
}

# 403 for an unsigned request = up.
s3_probe() { [[ $(http_code "$(s3_url)/") != 000 ]]; }
