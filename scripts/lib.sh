# Shared by scripts/run and scripts/test: a virtual environment that is reinstalled only when
# pyproject.toml or requirements.lock changes, and the services the tests need, installed and started when missing.

PYTHON_MIN="3.11"

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)" 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Python >= $PYTHON_MIN is required" >&2
  return 1
}

# ensure_venv EXTRAS: create .venv and install the project (editable) with EXTRAS ("" or "test"),
# every dependency at the version requirements.lock pins (scripts/lock writes it).
ensure_venv() {
  local extras="$1" spec="." stamp
  [ -n "$extras" ] && spec=".[$extras]"
  stamp="$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)-$extras"
  if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
  fi
  if [ ! -f .venv/.installed ] || ! grep -qx -- "$stamp" .venv/.installed; then
    echo "installing $spec into .venv ..."
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c requirements.lock -e "$spec"
    # A "test" install also satisfies a plain one: remember both.
    echo "$stamp" > .venv/.installed
    if [ -n "$extras" ]; then echo "${stamp%-*}-" >> .venv/.installed; fi
  fi
}

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    apt-get update -q >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    return 0
  fi
  local fresh=""
  if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "installing PostgreSQL ..."
    apt_install postgresql
    fresh=1
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  if [ -n "$fresh" ]; then
    # Our own fresh install: let local test connections in without a password, as on the dev machines.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL did not start" >&2; return 1; }
  if ! psql -h 127.0.0.1 -U postgres -d test -c "select 1" >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test" >/dev/null
  fi
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing Redis ..."
    apt_install redis-server
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 20); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.5
  done
  echo "Redis did not start" >&2
  return 1
}

ensure_espeak() {
  # Placeholder IVR recordings (`callcenter ivr prompts --synthesize`) are tested with it.
  if command -v espeak-ng >/dev/null 2>&1; then
    return 0
  fi
  echo "installing espeak-ng for the IVR prompt test ..."
  apt_install espeak-ng
}

ensure_chromium() {
  # fonts-noto-cjk: screenshots show Chinese, not boxes.
  if [ -x /usr/bin/chromium ] && [ -d /usr/share/fonts/opentype/noto ]; then
    return 0
  fi
  echo "installing Chromium (and CJK fonts) for the browser tests ..."
  apt_install chromium chromium-driver fonts-noto-cjk
}

# The real-PBX tier runs ../shared/asterisk (ASTERISK_DIR): install the libraries it links
# against (its README) when ldd finds one missing.
ASTERISK_PACKAGES="libedit2 libjansson4 libxml2 libxslt1.1 libsqlite3-0 libssl3 libsrtp2-1 libcurl4 libpq5"
ensure_asterisk_runtime() {
  local dir="${ASTERISK_DIR:-../shared/asterisk}"
  if [ ! -x "$dir/sbin/asterisk" ]; then
    echo "no Asterisk at $dir (the real-PBX tier needs ../shared/asterisk)" >&2
    return 1
  fi
  # ldd's whole output first: `ldd … | grep -q` under pipefail fails whenever grep stops reading
  # early (ldd dies of SIGPIPE), and the missing libraries were then never installed.
  local linked
  linked="$(LD_LIBRARY_PATH="$dir/lib" ldd "$dir/sbin/asterisk" "$dir"/modules/*.so 2>/dev/null || true)"
  if grep -q "not found" <<<"$linked"; then
    echo "installing Asterisk's runtime libraries ..."
    apt_install --no-install-recommends $ASTERISK_PACKAGES
  fi
}
