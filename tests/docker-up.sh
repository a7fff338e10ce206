#!/usr/bin/env bash
# Make a Docker engine available to the test suite: idempotent, offline apart from apt.
#
#   tests/docker-up.sh        (as root; ./run test and ./run demo call it)
#
# 1. Installs Debian's docker.io (dockerd 20.10 + containerd + runc) and busybox-static when
#    missing (apt-get: the only network access, to the package mirror).
# 2. Starts dockerd when nothing answers on /var/run/docker.sock: detached (setsid, stdin from
#    /dev/null, log in $WEAVE_DOCKERD_LOG, default /var/log/weave-test-dockerd.log), then waits
#    at most $WEAVE_DOCKERD_WAIT seconds (default 30) for the socket to answer. A dockerd
#    that runs already (a system service, an earlier run) is used as it is.
# 3. Builds the image the tests use, $WEAVE_TEST_IMAGE (default bb:local), from the static
#    busybox with `docker import` when it is missing: nothing is ever pulled.
#
# Exit status: 0 when Docker answers and the image exists, 1 otherwise, with one line on stderr
# saying why. Callers must not fail on it: the Docker tests then skip, naming the reason.
# WEAVE_TEST_DOCKER=0 skips all of this (prints that it did). A lock serialises concurrent runs.
# Starting dockerd changes the ROOT namespace's firewall (FORWARD policy DROP, br_netfilter):
# that is dockerd's doing, expected on CI machines.
set -uo pipefail
docker=/usr/bin/docker               # Debian's client matches the engine (not /usr/local/bin)
image="${WEAVE_TEST_IMAGE:-bb:local}"
log="${WEAVE_DOCKERD_LOG:-/var/log/weave-test-dockerd.log}"
wait_s="${WEAVE_DOCKERD_WAIT:-30}"

fail() { echo "docker-up: $*; Docker tests will be skipped" >&2; exit 1; }

[ "${WEAVE_TEST_DOCKER:-1}" = 0 ] && { echo "docker-up: WEAVE_TEST_DOCKER=0, not starting Docker" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root"

exec 9>/run/weave-docker-up.lock
flock -w 120 9 || fail "another docker-up.sh holds /run/weave-docker-up.lock"

answers() { timeout 10 "$docker" info >/dev/null 2>&1; }

missing=()
[ -x /usr/sbin/dockerd ] && [ -x "$docker" ] || missing+=(docker.io)
[ -x /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "docker-up: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
fi

if ! answers; then
  if pgrep -x dockerd >/dev/null; then
    echo "docker-up: a dockerd runs but does not answer yet; waiting" >&2
  else
    mkdir -p "$(dirname "$log")"
    # The daemon must outlive this script and the test run, and hold none of their pipes.
    setsid /usr/sbin/dockerd >>"$log" 2>&1 </dev/null 9>&- &
  fi
  deadline=$((SECONDS + wait_s))
  until answers; do
    [ $SECONDS -ge $deadline ] && fail "dockerd did not answer within ${wait_s}s (see $log)"
    sleep 0.3
  done
fi

if ! "$docker" image inspect "$image" >/dev/null 2>&1; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/etc"
  cp /bin/busybox "$root/bin/"
  for app in sh ip ping sleep cat ls nc wget hostname ifconfig true false ps kill echo; do
    ln -s busybox "$root/bin/$app"
  done
  tar -C "$root" -c . | "$docker" import -c 'CMD ["/bin/sh"]' - "$image" >/dev/null \
    || fail "docker import of $image failed"
fi
echo "docker-up: dockerd $("$docker" version -f '{{.Server.Version}}') ready, image $image"
