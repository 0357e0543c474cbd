#!/usr/bin/env bash
# Builds nginx 1.22.1 from the pristine upstream source with Parley linked in
# statically, under AddressSanitizer and UndefinedBehaviorSanitizer, with
# NGX_DEBUG_PALLOC so that pool misuse shows.  An ASan-built .so cannot be
# loaded into Debian's nginx, hence the whole server is built here.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tarball=$repo/build/src/nginx_1.22.1.orig.tar.gz
tree=$repo/build/ngx-asan
prefix=$repo/build/asan

[ -f "$tarball" ] || { echo "build-asan: $tarball missing: run 'make deps'"; exit 1; }

# UBSan reports stay recoverable so that the known report in nginx core
# (tests/sanitizer/ubsan.supp) can be suppressed; the tests fail on any other.
san="-fsanitize=address,undefined -fno-omit-frame-pointer"

if [ ! -f "$tree/objs/Makefile" ] || [ "$repo/config" -nt "$tree/objs/Makefile" ] \
   || [ "$0" -nt "$tree/objs/Makefile" ]; then
    rm -rf "$tree"
    mkdir -p "$tree"
    tar -xzf "$tarball" -C "$tree" --strip-components=1
    (cd "$tree" && ./configure \
        --prefix="$prefix" \
        --sbin-path="$prefix/sbin/nginx" \
        --modules-path="$prefix/modules" \
        --conf-path="$prefix/conf/nginx.conf" \
        --error-log-path=stderr \
        --pid-path="$prefix/run/nginx.pid" \
        --lock-path="$prefix/run/nginx.lock" \
        --http-log-path="$prefix/log/access.log" \
        --http-client-body-temp-path="$prefix/tmp/body" \
        --http-proxy-temp-path="$prefix/tmp/proxy" \
        --http-fastcgi-temp-path="$prefix/tmp/fastcgi" \
        --http-uwsgi-temp-path="$prefix/tmp/uwsgi" \
        --http-scgi-temp-path="$prefix/tmp/scgi" \
        --with-debug --with-threads --with-pcre-jit \
        --with-http_ssl_module --with-http_v2_module \
        --with-http_realip_module --with-http_stub_status_module \
        --with-http_auth_request_module \
        --with-cc-opt="-O1 -g $san -DNGX_DEBUG_PALLOC=1 -Wno-error=deprecated-declarations" \
        --with-ld-opt="$san" \
        --add-module="$repo" >"$tree/configure.log" 2>&1) || {
        tail -20 "$tree/configure.log"; exit 1; }
fi

make -s -C "$tree" -j"$(nproc)" >/dev/null
mkdir -p "$prefix/sbin" "$prefix/tmp"
cp "$tree/objs/nginx" "$prefix/sbin/nginx.tmp"
mv "$prefix/sbin/nginx.tmp" "$prefix/sbin/nginx"
