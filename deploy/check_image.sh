#!/usr/bin/env bash
# Build deploy/Dockerfile with Docker and check the image for real (tests/e2e/test_container_image.py): `moodbot doctor`,
# `moodbot classify` and `moodbot run` inside it with the small test model mounted, as the non-root user; the
# database in the volume, owner-only; the HEALTHCHECK; the labels; no build secret in any layer. From the repository
# root: bash deploy/check_image.sh
#
# Works without a registry: when debian:bookworm-slim can't be pulled, the same Debian release is built locally
# (mmdebstrap, then docker import). Environment:
#   MOODBOT_IMAGE      the tag to build (default moodbot:check)
#   PIP_CERT           a CA bundle pip needs (TLS-inspecting proxy): passed as a BuildKit secret, never in a layer
#   MOODBOT_WHEELS     a folder holding the CPU torch wheel (default: PIP_FIND_LINKS when it holds one); without
#                      it torch comes from PyPI-torch's CPU index (TORCH_INDEX_URL in the Dockerfile)
#   PYTHON             the Python with the test extras that runs the checks (default .venv/bin/python)
# Starts dockerd when it isn't running and this runs as root, and stops it again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${MOODBOT_IMAGE:-moodbot:check}
python=${PYTHON:-.venv/bin/python}
local_base=moodbot-base:bookworm-slim  # never named debian:…: a local build doesn't pass itself off as the pulled one
wheels_image=moodbot-wheels:local
torch_version=$(sed -n 's/^ARG TORCH_VERSION=//p' deploy/Dockerfile)
started=$SECONDS

say() { printf '[check_image %3ds] %s\n' "$((SECONDS - started))" "$*"; }

dockerd_pid=""
stop_dockerd() {
  if [[ -n "$dockerd_pid" ]]; then
    kill "$dockerd_pid" && wait "$dockerd_pid" || true
  fi
}
trap stop_dockerd EXIT

ensure_daemon() {
  docker info >/dev/null 2>&1 && return
  if [[ $(id -u) -ne 0 ]] || ! command -v dockerd >/dev/null; then
    echo "no Docker daemon, and this can't start one (needs root and dockerd)" >&2
    exit 1
  fi
  say "starting dockerd (log: /var/log/dockerd.log)"
  dockerd >/var/log/dockerd.log 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  echo "dockerd did not come up; see /var/log/dockerd.log" >&2
  exit 1
}

# BuildKit is needed (secrets, RUN --mount). Docker >= 23 has it through the buildx plugin only; older clients
# (Debian 12's docker.io, 20.10) have it built in behind DOCKER_BUILDKIT=1.
build=()
buildx=""
choose_builder() {
  if docker buildx version >/dev/null 2>&1; then
    build=(docker buildx build --load)
    buildx=yes
    return
  fi
  local client version
  for client in docker /usr/bin/docker; do
    version=$("$client" version --format '{{.Client.Version}}' 2>/dev/null) || continue
    if (( ${version%%.*} < 23 )); then
      build=(env DOCKER_BUILDKIT=1 "$client" build)
      return
    fi
  done
  echo "no BuildKit: install the buildx plugin (docker-buildx-plugin, or Debian's docker-buildx)" >&2
  exit 1
}

# The base: debian:bookworm-slim if present or pullable, else the same release built here.
base_image() {
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then echo debian:bookworm-slim; return; fi
  if docker image inspect "$local_base" >/dev/null 2>&1; then echo "$local_base"; return; fi
  if docker pull --quiet debian:bookworm-slim >/dev/null 2>&1; then echo debian:bookworm-slim; return; fi
  command -v mmdebstrap >/dev/null || { echo "can't pull debian:bookworm-slim and mmdebstrap is missing" >&2; exit 1; }
  say "no registry: building $local_base with mmdebstrap (Debian 12 minbase, slimmed like the official image)" >&2
  # The official slim image's dpkg excludes (docs, man pages, locales); merged /usr by hook, as in Debian 12 images.
  mmdebstrap --variant=minbase --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    bookworm - \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" \
    2>/tmp/moodbot-mmdebstrap.log \
    | docker import --change 'CMD ["bash"]' --message "Debian 12 minbase (mmdebstrap)" - "$local_base" >/dev/null
  echo "$local_base"
}

# The CPU torch wheel for this machine in MOODBOT_WHEELS (or pip's find-links folder), if there is one.
torch_wheel() {
  local folder=${MOODBOT_WHEELS:-${PIP_FIND_LINKS:-}}
  [[ -d "$folder" ]] || return 0
  compgen -G "$folder/torch-${torch_version}+cpu-cp311-cp311-*_$(uname -m).whl" | head -n 1
}

ensure_daemon
choose_builder
base=$(base_image)
say "base image: $base; builder: ${build[*]}"

args=(
  -f deploy/Dockerfile -t "$image"
  --build-arg "BASE_IMAGE=$base"
  --build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || true)"
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
)
secret=${PIP_CERT:-}
if [[ -n "$secret" && -f "$secret" ]]; then
  args+=(--secret "id=pip_cert,src=$secret")
fi
wheel=$(torch_wheel)
if [[ -n "$wheel" ]]; then
  say "torch from $wheel"
  if [[ -n "$buildx" ]]; then  # the folder itself becomes the `wheels` stage
    args+=(--build-context "wheels=$(dirname "$wheel")")
  else
    printf 'FROM scratch\nCOPY %s /\n' "$(basename "$wheel")" \
      | "${build[@]}" --quiet -t "$wheels_image" -f - "$(dirname "$wheel")" >/dev/null
    args+=(--build-arg "WHEELS_IMAGE=$wheels_image")
  fi
  # "+cpu" exists only in the folder: the CUDA build on PyPI can't be picked; torch's dependencies come from PyPI.
  args+=(--build-arg "TORCH_VERSION=${torch_version}+cpu" --build-arg "TORCH_INDEX_URL=https://pypi.org/simple")
fi

previous=$(docker image inspect "$image" --format '{{.Id}}' 2>/dev/null || true)
build_started=$SECONDS
"${build[@]}" "${args[@]}" .
# The last build's image differs in its labels only (same layers): drop it rather than leave it dangling.
if [[ -n "$previous" && "$previous" != "$(docker image inspect "$image" --format '{{.Id}}')" ]]; then
  docker rmi "$previous" >/dev/null 2>&1 || true
fi
say "built $image in $((SECONDS - build_started)) s: $(docker image inspect "$image" --format '{{.Size}}' \
  | awk '{printf "%.0f MB", $1 / 1e6}')"

gguf=${MOODBOT_TEST_GGUF:-$("$python" scripts/fetch_models.py smollm2 | tail -n 1)}
checks_started=$SECONDS
PYTHONPATH=$PWD MOODBOT_TEST_IMAGE=$image MOODBOT_TEST_GGUF=$gguf MOODBOT_TEST_BUILD_SECRET=$secret \
  "$python" -m pytest tests/e2e/test_container_image.py -q -p no:cacheprovider
say "checked $image in $((SECONDS - checks_started)) s"
