#!/usr/bin/env bash
# Every test of the Python package: builds and installs it for real (pip, dev profile,
# into a venv under the target dir), then ruff, mypy --strict, stubtest, pytest and the
# example notebook. Prints a summary; exits non-zero on any failure.
#
# Needs python3 (3.9+) with venv (Debian: python3-venv) and cargo. Honours
# CARGO_TARGET_DIR (default: the workspace's target/).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
export CARGO_TARGET_DIR="$target"
venv="$target/python-venv"
python="${PYTHON:-python3}"

failures=()
step() {
    local name="$1"
    shift
    local start=$SECONDS
    echo "==> $name"
    if "$@"; then
        echo "<== $name: ok ($((SECONDS - start)) s)"
    else
        echo "<== $name: FAILED ($((SECONDS - start)) s)"
        failures+=("$name")
    fi
}

setup_venv() {
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv" || return 1
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip &&
        "$venv/bin/python" -m pip install --quiet \
            "pytest>=8" "mypy>=1.11" "ruff>=0.6" "nbclient>=0.10" "nbformat>=5.10" \
            "ipykernel>=6.29" "tqdm>=4.66"
}

install_package() {
    # The dev profile shares the dependencies `cargo test --workspace` compiled.
    # --strip: a 10 MB wheel instead of 85 MB of debug info to zip and unzip on every run.
    MATURIN_PEP517_ARGS="--profile dev --strip" "$venv/bin/python" -m pip install \
        --quiet --force-reinstall --no-deps "$here"
}

run_ruff() {
    "$venv/bin/ruff" check "$here/acikit" "$here/tests" "$root/examples/python" &&
        "$venv/bin/ruff" format --check "$here/acikit" "$here/tests" "$root/examples/python"
}

run_mypy() {
    # Against the installed package (as users see it), not the source folder.
    (cd "$root/examples/python" && "$venv/bin/mypy" --strict -p acikit &&
        "$venv/bin/mypy" --strict . "$here/tests")
}

run_stubtest() {
    (cd "$target" && "$venv/bin/python" -m mypy.stubtest --allowlist "$here/stubtest-allowlist.txt" acikit)
}

run_pytest() {
    # From tests/, with the pytest script: the installed package, not the source folder.
    (cd "$here/tests" && "$venv/bin/pytest" -q -p no:cacheprovider .)
}

run_notebook() {
    "$venv/bin/python" "$here/tests/run_notebook.py" "$root/examples/python/quickstart.ipynb"
}

step "venv and test tools" setup_venv || true
if [ ${#failures[@]} -eq 0 ]; then
    step "pip install ./python (dev profile)" install_package
fi
if [ ${#failures[@]} -eq 0 ]; then
    step "ruff" run_ruff
    step "mypy --strict" run_mypy
    step "stubtest" run_stubtest
    step "pytest" run_pytest
    step "notebook" run_notebook
fi

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "python: all steps passed"
    exit 0
fi
echo "python: FAILED: ${failures[*]}"
exit 1
