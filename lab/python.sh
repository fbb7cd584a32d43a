# shellcheck shell=bash
# Sourced by install-deps.sh, tests/matrix/run.sh and tests/sanity/run.sh: which Python
# runs which ansible-core, and where to find it on this machine.

# The Python versions each ansible-core minor runs on as a controller, in the order
# we prefer them (the oldest cores keep Debian bookworm's 3.11).
core_pythons() {
  case "$1" in
    2.16 | 2.17) echo "3.11 3.12 3.10" ;;
    2.18 | 2.19) echo "3.11 3.12 3.13" ;;
    2.20 | 2.21) echo "3.13 3.12" ;;
    *) echo "3.13 3.12" ;;
  esac
}

# find_python VERSION: the path of pythonVERSION on PATH or under pyenv, or nothing.
find_python() {
  local found root
  # a pyenv shim on PATH is there without the version behind it: it must run
  # (the real interpreter, not the shim, so that a venv does not follow pyenv's settings)
  found=$(command -v "python$1" 2>/dev/null) \
    && found=$("$found" -c 'import sys; print(sys.executable)' 2>/dev/null) && { echo "$found"; return 0; }
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  # the newest patch release pyenv has of that minor
  found=$(printf '%s\n' "$root/versions/$1".*/bin/"python$1" | sort -V | tail -n1)
  [ -n "$found" ] && [ -x "$found" ] && echo "$found"
}

# python_for CORE-MINOR: a Python that runs that ansible-core, or a message and status 1.
# LOCALPV_PYTHON overrides the search.
python_for() {
  local v found
  if [ -n "${LOCALPV_PYTHON:-}" ]; then
    "$LOCALPV_PYTHON" -c '' 2>/dev/null || { echo "LOCALPV_PYTHON=$LOCALPV_PYTHON does not run" >&2; return 1; }
    echo "$LOCALPV_PYTHON"; return 0
  fi
  for v in $(core_pythons "$1"); do
    found=$(find_python "$v") && { echo "$found"; return 0; }
  done
  echo "ansible-core $1 needs Python $(core_pythons "$1" | sed 's/ / or /g'); none was found on PATH or" \
    "under pyenv ($(pyenv root 2>/dev/null || echo "no pyenv")). Install one, or point LOCALPV_PYTHON at it." >&2
  return 1
}
