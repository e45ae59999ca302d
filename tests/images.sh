#!/usr/bin/env bash
# Builds Leitwerk's images with buildah, where no registry can be reached: on a base made from
# this machine's own libraries, with binaries built here.
#
# Each image comes from its crate's Dockerfile (operator/, trainer/, inference-server/). Their
# build stage compiles with the public Rust image and their base is distroless; both are
# public images. Here the script replaces them:
# - the build stage with a directory of binaries (`--build-context build=DIR`): those from
#   cargo's target directory, plus ONNX Runtime and MiniLM for the trainer and inference server;
# - the base with `localhost/leitwerk-base:local`, made from scratch with the C libraries the
#   binaries link, CA certificates and a `nonroot` user 65532, as distroless' `cc` image has them.
#
# Usage: tests/images.sh [--profile debug|release] [--from DIR] [operator|trainer|inference-server ...]
#   (default: release; all three; --from: a directory holding the binaries, instead of cargo's
#   target directory for the profile). With release, the operator comes from Cargo's `operator`
#   profile (release, optimised for size: see Cargo.toml). Tags localhost/leitwerk-<name>:dev.
#   Prints the tags.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=release
images=() from=
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    operator|trainer|inference-server) images+=("$1"); shift ;;
    *) echo "images.sh: unknown argument $1 (usage: images.sh [--profile debug|release] [--from DIR] [operator|trainer|inference-server ...])" >&2; exit 2 ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=(operator trainer inference-server)
command -v buildah >/dev/null || { echo "images.sh: buildah is missing (Debian: apt-get install -y buildah)" >&2; exit 1; }
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
if [ -n "$from" ]; then
  target=$(cd "$from" && pwd)
else
  target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$profile
fi
# Where one image's binary is, and the command that builds it.
dir_of() { if [ -z "$from" ] && [ "$profile" = release ] && [ "$1" = operator ]; then echo "${target%/*}/operator"; else echo "$target"; fi; }
build_of() {
  case $profile/$1 in
    release/operator) echo "cargo build --profile operator -p leitwerk-operator" ;;
    release/*) echo "cargo build --workspace --bins --release" ;;
    *) echo "cargo build --workspace --bins" ;;
  esac
}
log() { echo "[images] $*" >&2; }

binary_of() { case $1 in operator) echo leitwerk-operator ;; trainer) echo leitwerk-trainer ;; inference-server) echo leitwerk-inference-server ;; esac; }
binaries=()
for image in "${images[@]}"; do
  b=$(dir_of "$image")/$(binary_of "$image")
  [ -x "$b" ] || { echo "images.sh: $b is not built: $(build_of "$image")" >&2; exit 1; }
  binaries+=("$b")
done
ort=$(bash "$root/tests/onnxruntime.sh")
minilm=$(bash "$root/tests/minilm.sh")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The base: the C libraries the binaries and ONNX Runtime link, CA certificates, user 65532.
log "making localhost/leitwerk-base:local from this machine's libraries"
base=$work/base
mkdir -p "$base/etc/ssl/certs" "$base/tmp"
for lib in $(ldd "${binaries[@]}" "$ort" 2>/dev/null | grep -P '^\t' | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$base$(dirname "$lib")"
  cp -L "$lib" "$base$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/etc/group"
container=$(buildah from scratch)
buildah copy "$container" "$base" / >/dev/null
buildah commit --rm "$container" localhost/leitwerk-base:local >/dev/null

for image in "${images[@]}"; do
  name=$(binary_of "$image")
  # The build stage as a directory: what its last step leaves under /out.
  stage=$work/$image-stage
  out=$stage/out
  mkdir -p "$out/usr/local/bin" "$work/$image"
  cp "$(dir_of "$image")/$name" "$out/usr/local/bin/"
  if [ "$image" != operator ]; then
    mkdir -p "$out/opt/leitwerk"
    cp "$ort" "$out/opt/leitwerk/libonnxruntime.so"
    cp -r "$minilm" "$out/opt/leitwerk/minilm"
  fi
  log "building localhost/$name:dev from $image/Dockerfile"
  buildah bud --quiet --build-context "build=$stage" --build-arg BASE=localhost/leitwerk-base:local \
    -f "$root/$image/Dockerfile" -t "localhost/$name:dev" "$work/$image" >/dev/null
  echo "localhost/$name:dev"
done
# The images these replace are left untagged: drop them, so that rebuilds do not fill the disk.
buildah rmi --prune >/dev/null 2>&1 || true
