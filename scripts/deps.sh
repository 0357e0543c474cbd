#!/usr/bin/env bash
# Installs every Debian and npm package Parley needs. Idempotent; prints nothing
# when everything is already there. Needs root (CI and dev machines run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
    build-essential pkg-config clang libclang-rt-14-dev dpkg-dev
    nginx nginx-dev
    libssl-dev zlib1g-dev libpcre2-dev
    librdkafka-dev libhiredis-dev libmariadb-dev libmongoc-dev libbson-dev
    libjansson-dev libcurl4-openssl-dev libcriterion-dev
    mariadb-server mariadb-client redis-server redis-tools kcat
    curl jq wrk sysbench python3-websockets docker-compose
)

# Node.js runs the integration tests; machines of this project ship Node 20,
# a bare Debian gets its own (18), which the test runner also supports.
command -v node >/dev/null 2>&1 || DEB_PACKAGES+=(nodejs npm)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The packaged services must not start on the machine's default ports:
    # Parley starts its own private instances under var/.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nginx 1.22.1 pristine source for the static sanitizer build.
NGX_TARBALL=build/src/nginx_1.22.1.orig.tar.gz
if [ ! -f "$NGX_TARBALL" ]; then
    echo "deps: fetching nginx 1.22.1 source"
    if [ ! -f /etc/apt/sources.list.d/parley-src.sources ]; then
        cat > /etc/apt/sources.list.d/parley-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        apt-get update -qq
    fi
    mkdir -p build/src
    (cd build/src && apt-get source -qq --download-only nginx=1.22.1-9+deb12u9 >/dev/null 2>&1) \
        || { echo "deps: apt-get source nginx=1.22.1-9+deb12u9 failed"; exit 1; }
fi

# npm packages used by the tests (independent validators and clients).
if [ -f tests/package.json ]; then
    if [ ! -d tests/node_modules ] || [ tests/package.json -nt tests/node_modules/.stamp ]; then
        echo "deps: installing npm packages for tests"
        (cd tests && npm install --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules/.stamp)
    fi
fi
