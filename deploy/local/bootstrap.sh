#!/usr/bin/env bash
# Installs everything `make run` and `make test` need on a fresh machine of this
# kind: Debian packages, the virtualenv, the Kafka jars. Idempotent: each part
# is skipped while its stamp is newer than what it was built from.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
mkdir -p var

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
need_pkgs=()
have_pg() { ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }
have_pg || need_pkgs+=(postgresql)
command -v java >/dev/null || need_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_pkgs+=(maven)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
command -v kcat >/dev/null || need_pkgs+=(kcat)
command -v docker-compose >/dev/null || need_pkgs+=(docker-compose)
command -v caddy >/dev/null || need_pkgs+=(caddy)   # the topology test runs the compose file's proxy
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need_pkgs+=(fonts-dejavu-core)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${need_pkgs[*]}; run as root or install them"; exit 1
  fi
  say "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # Debian's postgresql and caddy packages start system services; ours run in var/.
  if command -v systemctl >/dev/null; then systemctl disable --now caddy 2>/dev/null || true; fi
  if command -v pg_ctlcluster >/dev/null; then
    for c in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do pg_ctlcluster ${c/\// } stop 2>/dev/null || true; done
  fi
fi

# --- Python virtualenv -----------------------------------------------------
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $py"
  "$py" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if [ ! -f var/.pip-stamp ] || [ pyproject.toml -nt var/.pip-stamp ]; then
  say "pip install -e .[dev]"
  .venv/bin/pip install -q -e ".[dev]"
  touch var/.pip-stamp
fi

# --- Kafka jars from Maven Central -----------------------------------------
libs=var/kafka-libs
if [ ! -f var/.kafka-stamp ] || [ deploy/kafka/pom.xml -nt var/.kafka-stamp ]; then
  say "fetching Kafka jars with mvn"
  rm -rf "$libs"
  (cd deploy/kafka && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$root/$libs")
  touch var/.kafka-stamp
fi
say "ready"
