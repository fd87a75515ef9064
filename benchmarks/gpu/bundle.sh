#!/usr/bin/env bash
# Pack what a bare GPU host (Python 3.12 with torch, no network) lacks to run the GPU benchmark:
# the Triton server from the nvidia-pytriton wheel (binary, python backend, the host Python's stub and the
# bundled libraries, without a libpython: the host's own is used) and the wheels the host has not
# (numpy<2 for the stub, diffusers, tritonclient), unpacked, stripped and re-packed with xz to
# travel small (the device copies the working tree and at most 64 MiB in all).
#
#   benchmarks/gpu/bundle.sh [OUT_DIR]      # default build/gpu-bundle; run from the repository root
set -euo pipefail
export XZ_OPT=-9
out=${1:-build/gpu-bundle}
python=${PYTHON:-.venv/bin/python}  # an environment with nvidia-pytriton and the versions to pack
py_version=${PY_VERSION:-3.12}      # the GPU host's Python
site=$("$python" -c "import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent.parent)")
version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }

rm -rf "$out" && mkdir -p "$out"
(cd "$site" && tar -cJf - \
    pytriton/__init__.py pytriton/tritonserver/bin pytriton/tritonserver/backends/python \
    "pytriton/tritonserver/python_backend_stubs/$py_version" \
    --exclude='libpython3*' --exclude='__pycache__' nvidia_pytriton.libs) > "$out/triton.tar.xz"

# pack NAME PACKAGE==VERSION...: unpacked wheels, without test suites, re-packed with xz
pack() {
    local name=$1; shift
    rm -rf "$out/wheels" "$out/site" && mkdir -p "$out/wheels" "$out/site"
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$py_version" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$out/wheels" "$@"
    for wheel in "$out"/wheels/*.whl; do "$python" -m zipfile -e "$wheel" "$out/site"; done
    find "$out/site" -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} +
    find "$out/site" -name '*.so*' -type f -exec strip --strip-unneeded {} +  # debug symbols: megabytes
    tar -C "$out/site" -cJf "$out/$name.tar.xz" .
    rm -rf "$out/wheels" "$out/site"
}
pack site numpy==1.26.4 "diffusers==$(version diffusers)" "tritonclient==$(version tritonclient)" \
    "python-rapidjson==$(version python-rapidjson)"
# installed on the host only where its own are older than tritonclient's generated code needs
pack grpc "grpcio==$(version grpcio)" "protobuf==$(version protobuf)"
du -sh "$out"/*
