# shellcheck shell=bash
# shellcheck disable=SC2154  # DIR, SCRIPTS: set by scripts/test-services
# Parse Server (install-only) and the files adapters the tests configure. Sourced by
# scripts/test-services (its header lists the functions every file here defines).
#
# Installed with `npm ci` from scripts/parse-server.package-lock.json (every transitive version
# pinned, no download addresses recorded) into $DIR/parse-server (PFM_TEST_PARSE_SERVER_DIR).
# It is not started here: each test starts its own instances (port, database, files adapter)
# with scripts/parse-server.

# Pinned versions: bump deliberately; `install` reinstalls when these (or the lock file) change.
# router 2.3.0 (pulled in through express 5) breaks POST /batch, so router 2.2.0 is a direct
# dependency that an npm override forces everywhere. The lock file pins everything else:
# regenerate it whenever these change (npm install --package-lock-only in $DIR/parse-server,
# then copy package-lock.json back).
readonly PARSE_SERVER_VERSION=9.10.0
readonly PARSE_ROUTER_VERSION=2.2.0
readonly PARSE_FS_ADAPTER_VERSION=3.0.0
readonly PARSE_S3_ADAPTER_VERSION=5.3.1

readonly PARSE_DIR="$DIR/parse-server"
readonly PARSE_LOCK="$SCRIPTS/parse-server.package-lock.json"

parse_server_env() { printf 'PFM_TEST_PARSE_SERVER_DIR %s\n' "$PARSE_DIR"; }

parse_server_version() { printf 'parse-server %s' "$PARSE_SERVER_VERSION"; }

parse_server_package_json() {
    cat <<EOF
{
  "name": "pfm-parse-server",
  "private": true,
  "description": "Parse Server for the parse-files-migrate integration tests; written by scripts/test-services",
  "dependencies": {
    "@parse/fs-files-adapter": "$PARSE_FS_ADAPTER_VERSION",
    "@parse/s3-files-adapter": "$PARSE_S3_ADAPTER_VERSION",
    "parse-server": "$PARSE_SERVER_VERSION",
    "router": "$PARSE_ROUTER_VERSION"
  },
  "overrides": {
    "router": "\$router"
  }
}
EOF
}

# What an install was made from: the package.json we write and the committed lock file.
parse_server_stamp() {
    { parse_server_package_json; cat "$PARSE_LOCK" 2>/dev/null; } | sha256sum | cut -d' ' -f1
}

parse_server_is_current() {
    [[ -f $PARSE_DIR/.installed && $(<"$PARSE_DIR/.installed") == "$(parse_server_stamp)" ]] || return 1
    grep -q "\"version\": \"$PARSE_SERVER_VERSION\"" "$PARSE_DIR/node_modules/parse-server/package.json" 2>/dev/null
}

parse_server_install() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        die "parse-server: node and npm not found; install Node.js 20.19+, 22.13+ or 24.11+"
    fi
    # parse-server's engines field.
    node -e '
        const [maj, min] = process.versions.node.split(".").map(Number);
        const ok = (maj === 20 && min >= 19) || (maj === 22 && min >= 13) || (maj === 24 && min >= 11);
        process.exit(ok ? 0 : 1);' ||
        die "parse-server: node $(node --version) is unsupported; parse-server $PARSE_SERVER_VERSION needs 20.19+, 22.13+ or 24.11+"
    mkdir -p "$PARSE_DIR"
    rm -f "$PARSE_DIR/.installed"
    parse_server_package_json >"$PARSE_DIR/package.json"
    if [[ -f $PARSE_LOCK ]]; then
        cp -f "$PARSE_LOCK" "$PARSE_DIR/package-lock.json"
        say "parse-server: npm ci (parse-server $PARSE_SERVER_VERSION, router $PARSE_ROUTER_VERSION; ~1 min)"
        (cd "$PARSE_DIR" && npm ci --no-audit --no-fund)
    else
        say "parse-server: $PARSE_LOCK missing; npm install without a lock file (transitive versions float)"
        rm -f "$PARSE_DIR/package-lock.json"
        (cd "$PARSE_DIR" && npm install --no-audit --no-fund)
    fi
    parse_server_stamp >"$PARSE_DIR/.installed"
}
