#!/usr/bin/env bash
# Builds ngx_parley_module.so against Debian's nginx (nginx-dev), with the
# same configure flags Debian used, into build/modules/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tree=$repo/build/ngx-dyn
out=$repo/build/modules

# configure again whenever the addon config changed (the file list lives there)
if [ ! -f "$tree/objs/Makefile" ] || [ "$repo/config" -nt "$tree/objs/Makefile" ] \
   || [ "$0" -nt "$tree/objs/Makefile" ]; then
    rm -rf "$tree"
    mkdir -p "$(dirname "$tree")"
    cp -r /usr/share/nginx/src "$tree"
    # shellcheck disable=SC1091
    . "$tree/conf_flags"
    (cd "$tree" && ./configure "${NGX_CONF_FLAGS[@]}" \
        --with-cc-opt="-Wno-error=deprecated-declarations" \
        --add-dynamic-module="$repo" >"$tree/configure.log" 2>&1) || {
        tail -20 "$tree/configure.log"; exit 1; }
fi

make -s -C "$tree" -f objs/Makefile modules
mkdir -p "$out"
cp "$tree/objs/ngx_parley_module.so" "$out/ngx_parley_module.so.tmp"
mv "$out/ngx_parley_module.so.tmp" "$out/ngx_parley_module.so"
