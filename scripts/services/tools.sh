# shellcheck shell=bash
# Command-line tools the tests and bench/run use (install-only): tmux (tests/terminal.rs records
# a terminal session), curl (the download baseline of bench/run, and the readiness probes here),
# GNU time (peak RSS in bench/run). Debian's versions; no pin. Sourced by scripts/test-services
# (its header lists the functions every file here defines).

# COMMAND:PACKAGE
readonly TOOLS=(tmux:tmux curl:curl /usr/bin/time:time)

tools_version() { printf 'tmux, curl, time'; }

# The packages of the tools that are missing, one a line.
tools_missing() {
    local tool
    for tool in "${TOOLS[@]}"; do
        command -v "${tool%:*}" >/dev/null 2>&1 || printf '%s\n' "${tool##*:}"
    done
}

tools_is_current() { [[ -z $(tools_missing) ]]; }

tools_install() {
    local missing
    mapfile -t missing < <(tools_missing)
    apt_install tools "${missing[@]}"
}
