# shellcheck shell=bash
# shellcheck disable=SC2154  # DIR, RUN, DATA, VENV, PYTHON: set by scripts/test-services
# The MongoDB wire protocol server: SecantusDB. Sourced by scripts/test-services (its header
# lists the functions every file here defines).
#
# The default is the Python server secantusd-py from PyPI (SecantusDB). Its wheel bundles a
# prebuilt WiredTiger, so nothing compiles; pymongo comes with it, and the readiness probe (and
# bench/seed.py) use it.
#
# PFM_TEST_MONGO_IMPL=rs runs SecantusDB's Rust daemon (secantusd-rs, crates.io secantus-mdb)
# instead of the Python server: 5-6x the Python server's batched write and find rates, which
# makes it the server for benchmarks (bench/run --mongo rs). Not the default: it declares
# rust-version 1.98 (built here with --ignore-rust-version), needs cmake and liblz4-dev, and
# compiles for ~7 min once. Its data lives in data/mongo-rs. The venv is installed either way
# (the probe needs pymongo).
#
# Overrides: PFM_TEST_MONGO_PORT (27117), PFM_TEST_MONGO_IMPL (py or rs), PFM_PYTHON (python3,
# for the venv).

# Pinned versions: bump deliberately; `install` reinstalls when these change.
readonly SECANTUS_VERSION=0.7.0b3
readonly SECANTUS_RS_VERSION=0.5.3-beta.196

readonly MONGO_HOST=127.0.0.1
MONGO_PORT=${PFM_TEST_MONGO_PORT:-27117}
MONGO_IMPL=${PFM_TEST_MONGO_IMPL:-py}
case $MONGO_IMPL in
    py | rs) ;;
    *) printf '[test-services] error: PFM_TEST_MONGO_IMPL=%s: expected py or rs\n' "$MONGO_IMPL" >&2; exit 2 ;;
esac
readonly SECANTUS_RS_BIN="$DIR/secantus-rs/bin/secantusd-rs"

# The URI is what the tests get; directConnection=true: SecantusDB advertises a one-node
# replica set, and the driver must not depend on discovering it.
mongo_uri() { printf 'mongodb://%s:%s/?directConnection=true' "$MONGO_HOST" "$MONGO_PORT"; }
mongo_address() { mongo_uri; }
mongo_listen() { printf '%s %s\n' "$MONGO_HOST" "$MONGO_PORT"; }
mongo_env() { printf 'PFM_TEST_MONGO_URI %s\n' "$(mongo_uri)"; }

mongo_version() {
    printf 'SecantusDB %s' "$SECANTUS_VERSION"
    if [[ $MONGO_IMPL == rs ]]; then printf ' and secantusd-rs %s' "$SECANTUS_RS_VERSION"; fi
}

mongo_py_is_current() { venv_has "SecantusDB==$SECANTUS_VERSION" pymongo; }
mongo_rs_is_current() { crate_installed secantus-rs secantus-mdb "$SECANTUS_RS_VERSION" secantusd-rs; }
mongo_is_current() {
    mongo_py_is_current || return 1
    [[ $MONGO_IMPL == py ]] || mongo_rs_is_current
}

mongo_install() {
    if ! mongo_py_is_current; then
        command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PFM_PYTHON)"
        # SecantusDB ships wheels for CPython 3.10-3.13 only.
        "$PYTHON" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' ||
            die "$PYTHON is $("$PYTHON" -V 2>&1); SecantusDB $SECANTUS_VERSION needs Python 3.10-3.13 (set PFM_PYTHON)"
        # --only-binary: the wheel bundles a prebuilt WiredTiger; an sdist would try to compile it.
        venv_pip mongo --only-binary=SecantusDB "SecantusDB==$SECANTUS_VERSION"
    fi
    if [[ $MONGO_IMPL == rs ]] && ! mongo_rs_is_current; then
        local pkg missing=()
        for pkg in cmake liblz4-dev; do
            dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
        done
        # WiredTiger is built from source.
        if ((${#missing[@]})); then apt_install mongo "${missing[@]}"; fi
        say "mongo: cargo install secantus-mdb $SECANTUS_RS_VERSION (release build, ~7 min on 2 cores)"
        # --ignore-rust-version: every published version declares rust-version 1.98 but builds and
        # passes the client checks on 1.95 (test-services.md).
        cargo_install secantus-rs cargo-target-rs secantus-mdb \
            --version "$SECANTUS_RS_VERSION" --ignore-rust-version
    fi
}

# Running as the other implementation than the one asked for: the env lines would lie.
mongo_check_running() {
    local running
    running=$(cat "$RUN/mongo.impl" 2>/dev/null || echo py)
    if [[ $running != "$MONGO_IMPL" ]]; then
        die "mongo is running (pid $1) as secantusd-$running, not secantusd-$MONGO_IMPL (PFM_TEST_MONGO_IMPL); run 'stop' first"
    fi
}

mongo_data() { if [[ $MONGO_IMPL == rs ]]; then echo mongo-rs; else echo mongo; fi; }
mongo_fresh() { fresh_data mongo "$(mongo_data)"; }

mongo_start() {
    local store bin
    store="$DATA/$(mongo_data)"
    mkdir -p "$store"
    # An explicit (empty) --config turns off secantusd's auto-discovery of
    # ./secantusd.toml and ~/.secantus/secantusd.toml, which could change ports
    # or storage behind our back.
    : >"$RUN/secantusd.toml"
    printf '%s\n' "$MONGO_IMPL" >"$RUN/mongo.impl"
    if [[ $MONGO_IMPL == rs ]]; then bin=$SECANTUS_RS_BIN; else bin=$VENV/bin/secantusd-py; fi
    launch mongo "$bin" --config "$RUN/secantusd.toml" \
        --host "$MONGO_HOST" --port "$MONGO_PORT" \
        --storage-path "$store" --log-level WARNING
}

mongo_probe() {
    port_open "$MONGO_HOST" "$MONGO_PORT" || return 1
    "$VENV/bin/python" - "$(mongo_uri)" <<'PY' >/dev/null 2>&1
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000, connectTimeoutMS=2000,
                        socketTimeoutMS=10000)
c.admin.command("ping")
PY
}
