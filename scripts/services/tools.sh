# shellcheck shell=bash
# Command-line tools the tests and bench/run use (install-only): tmux (tests/terminal.rs records
# a terminal session), curl (the download baseline of bench/run, and the readiness probes here),
# GNU time (peak RSS in bench/run). Debian's versions; no pin. Also prometheus-client (pinned) in
# the shared venv: tests/it parse --metrics-file with its text-format parser. Sourced by scripts/test-services
# (its header lists the functions every file here defines).

# COMMAND:PACKAGE
readonly TOOLS=(tmux:tmux curl:curl /usr/bin/time:time)

readonly PROMETHEUS_CLIENT_VERSION=0.21.1

tools_version() { printf 'tmux, curl, time, prometheus-client %s' "$PROMETHEUS_CLIENT_VERSION"; }

# The packages of the tools that are missing, one a line.
tools_missing() {
    local tool
    for tool in "${TOOLS[@]}"; do
        command -v "${tool%:*}" >/dev/null 2>&1 || printf '%s\n' "${tool##*:}"
    done
}

tools_is_current() {
    [[ -z $(tools_missing) ]] && venv_has "prometheus-client==$PROMETHEUS_CLIENT_VERSION"
}

tools_install() {
    local missing
    mapfile -t missing < <(tools_missing)
    if ((${#missing[@]})); then apt_install tools "${missing[@]}"; fi
    venv_has "prometheus-client==$PROMETHEUS_CLIENT_VERSION" ||
        venv_pip tools "prometheus-client==$PROMETHEUS_CLIENT_VERSION"
}
