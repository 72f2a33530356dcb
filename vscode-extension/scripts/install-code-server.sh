#!/usr/bin/env bash
# Install code-server (VS Code 1.100 in the browser) from the npm registry into a cache directory,
# without any download outside the registries: install with --ignore-scripts, rebuild the native
# modules from source, use Debian's rg for @vscode/ripgrep, then do what code-server's own
# postinstall.sh would do (VS Code's dependencies, the asar and bin symlinks, the extensions'
# dependencies). Prints the install directory. Skips everything when it is already complete.
#
# Needs: node 20 + npm, a C/C++ toolchain, python3, pkg-config, libkrb5-dev, ripgrep.
# Env: CODE_SERVER_VERSION (default 4.100.3), STONEFORGE_E2E_CACHE (default ~/.cache/stoneforge-e2e).
set -euo pipefail

version="${CODE_SERVER_VERSION:-4.100.3}"
recipe=1 # bump when the steps below change, so caches made by older steps are not reused
cache="${STONEFORGE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stoneforge-e2e}"
dest="$cache/code-server-$version-r$recipe"

if [[ -f "$dest/.complete" ]]; then
  echo "$dest"
  exit 0
fi

log() { echo "install-code-server: $*" >&2; }
for tool in node npm make g++ python3 pkg-config rg; do
  command -v "$tool" >/dev/null || { log "missing $tool (see scripts/extension-test for the apt packages)"; exit 1; }
done
pkg-config --exists krb5-gssapi || { log "missing libkrb5-dev (needed to build kerberos)"; exit 1; }

mkdir -p "$cache"
work="$(mktemp -d "$cache/.code-server-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
quiet=(--no-audit --no-fund --loglevel=error)

log "installing code-server@$version from the npm registry into $work (no install scripts)"
cd "$work"
echo '{"private": true}' >package.json
npm install --ignore-scripts "${quiet[@]}" "code-server@$version" >&2

# code-server's own native module: build from source instead of fetching a prebuilt binary.
log "building argon2"
npm_config_build_from_source=true npm rebuild argon2 "${quiet[@]}" >&2

vscode="$work/node_modules/code-server/lib/vscode"
log "installing VS Code's dependencies"
cd "$vscode"
npm install --omit=dev --ignore-scripts "${quiet[@]}" >&2
# @vscode/ripgrep's postinstall downloads rg from GitHub; Debian's rg serves the same purpose.
mkdir -p node_modules/@vscode/ripgrep/bin
cp "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
log "building native modules (node-pty, watcher, kerberos, spdlog, ...); about a minute"
# node-pty's build runs `npx node-gyp`; npm_config_yes answers npx's install prompt.
npm_config_yes=true npm rebuild "${quiet[@]}" \
  node-pty @parcel/watcher kerberos native-watchdog @vscode/spdlog @vscode/deviceid >&2

# What postinstall.sh does after that (Linux flavour).
ln -sfn node_modules node_modules.asar
(cd bin/remote-cli && ln -sfn code-linux.sh code-server)
(cd bin/helpers && ln -sfn browser-linux.sh browser.sh)

log "installing the built-in extensions' dependencies"
cd "$vscode/extensions"
npm install --omit=dev --ignore-scripts "${quiet[@]}" >&2
node postinstall.mjs >/dev/null

log "checking the native modules load"
cd "$vscode"
node -e '
  for (const m of ["node-pty", "@vscode/spdlog", "native-watchdog", "kerberos", "@parcel/watcher"]) require(m);
' >&2
(cd "$work" && node -e 'require("argon2")') >&2

touch "$work/.complete"
rm -rf "$dest"
mv "$work" "$dest"
trap - EXIT
log "installed in $dest"
echo "$dest"
