#!/bin/sh
# Install the etcd server and etcd's own client (Debian/Ubuntu packages etcd-server and
# etcd-client: tests/consortium/test_rbac.py attacks etcd with etcdctl) when either is missing.
# Idempotent, quiet, non-interactive: safe under CI=true with no stdin. Needs root (or sudo).
set -eu

if { command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ]; } && \
        command -v etcdctl >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-etcd: not root and no sudo; run: apt-get install etcd-server" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends etcd-server etcd-client </dev/null >/dev/null

# The package enables an etcd service on 2379; tests start their own members on free ports,
# so the service is not needed (and there is no systemd in most CI containers anyway).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi

etcd --version | head -n 1
