#!/usr/bin/env bash
# Fetches llama.cpp's source from the npm package node-llama-cpp (its
# package/llama/gitRelease.bundle is a git bundle of llama.cpp's release) and
# builds llama-server, llama-batched-bench and llama-cli, unmodified, cached
# under ~/.cache/kvmm/llama-<version>: a second run only prints the path.
#   llama-build.sh [--print]     prints the build directory (bin/ holds the tools)
# Environment: KVMM_LLAMA_NPM_VERSION (default 3.22.1), KVMM_CACHE (default
# ~/.cache/kvmm), KVMM_LLAMA_JOBS (default 2).
set -euo pipefail

ver=${KVMM_LLAMA_NPM_VERSION:-3.22.1}
cache=${KVMM_CACHE:-$HOME/.cache/kvmm}
jobs=${KVMM_LLAMA_JOBS:-2}
dir=$cache/llama-$ver
src=$dir/src
bld=$dir/build
targets=(llama-server llama-batched-bench llama-cli)

done_stamp=$bld/.kvmm-built
if [ -f "$done_stamp" ]; then
	echo "$bld"
	exit 0
fi
mkdir -p "$dir"
log=$dir/build.log
if [ ! -d "$src/.git" ]; then
	echo "llama-build: fetching node-llama-cpp@$ver from npm" >&2
	tmp=$(mktemp -d "$dir/npm.XXXXXX")
	(cd "$tmp" && npm pack --silent "node-llama-cpp@$ver" >/dev/null)
	tar -xzf "$tmp"/node-llama-cpp-*.tgz -C "$tmp" package/llama/gitRelease.bundle
	rm -rf "$src"
	git clone -q "$tmp/package/llama/gitRelease.bundle" "$src"
	rm -rf "$tmp"
fi
echo "llama-build: building ${targets[*]} in $bld (a few minutes; log in $log)" >&2
nice cmake -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$log" 2>&1 ||
	{ tail -n 20 "$log" >&2; exit 1; }
nice cmake --build "$bld" -j"$jobs" --target "${targets[@]}" >>"$log" 2>&1 ||
	{ tail -n 20 "$log" >&2; exit 1; }
touch "$done_stamp"
echo "$bld"
