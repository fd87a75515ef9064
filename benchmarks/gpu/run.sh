#!/usr/bin/env bash
# On a GPU host that has Python with torch but no network: unpack what benchmarks/gpu/bundle.sh
# packed into a virtualenv of our own, run the GPU tests, then benchmarks/serving_gpu.py.
#
#   benchmarks/gpu/run.sh [serving_gpu.py arguments]     # from the repository root
#
# The virtualenv sits in front of the host's packages (a .pth file adds those after its own): the
# Triton python stub finds its packages through the `python` first on PATH, and it needs numpy<2
# where the host may have numpy 2.
set -uo pipefail
bundle=${BUNDLE:-build/gpu-bundle}
host=${PYTHON:-python3}
env_dir=${PPO_GPU_ENV:-/tmp/ppo-gpu-env}

rm -rf "$env_dir"
"$host" -m venv --without-pip "$env_dir" || exit 1
py="$env_dir/bin/python"
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
printf '%s\n' "$PWD/client" "$PWD/server_export" > "$site/aa-project.pth"
"$host" -c "import sys; print('\n'.join(p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))))" \
    > "$site/zz-host.pth"
tar -C "$site" -xJf "$bundle/site.tar.xz" && tar -C "$site" -xJf "$bundle/triton.tar.xz" || exit 1
if ! "$py" -c "import tritonclient.grpc" 2>/dev/null; then
    echo "the host's grpcio/protobuf are older than tritonclient needs: using the bundled ones"
    tar -C "$site" -xJf "$bundle/grpc.tar.xz" || exit 1
fi

# The stub links libpython dynamically; the launcher adds this interpreter's LIBDIR when the
# library is there, and anything found here is a fallback.
libpython=$("$py" -c "import sysconfig as s; print(s.get_config_var('INSTSONAME'))")
if ! ldconfig -p | grep -q "$libpython"; then
    found=$(find / -xdev -name "$libpython" -print -quit 2>/dev/null)
    echo "libpython: ${found:-not found ($libpython)}"
    [ -n "$found" ] && export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# Python models pass tensors through /dev/shm; a container's 64 MB default cannot hold a 512x512 batch.
shm_mb=$(df -m /dev/shm 2>/dev/null | awk 'NR==2 {print $2}')
echo "/dev/shm: ${shm_mb:-?} MB"
if [ "${shm_mb:-0}" -lt 1024 ] && [ "$(id -u)" -eq 0 ]; then
    mount -o remount,size=8G /dev/shm && echo "/dev/shm remounted with 8 GB"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import numpy, torch, diffusers, transformers, tritonclient.grpc
print('numpy', numpy.__version__, 'torch', torch.__version__, 'diffusers', diffusers.__version__,
      'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" || exit 1

export PYTHONUNBUFFERED=1
"$py" -m pytest -q -m gpu -p no:cacheprovider tests/unit/test_cuda_graphs.py tests/integration/test_demo_training.py
tests=$?
"$py" benchmarks/serving_gpu.py "$@"
bench=$?
echo "gpu tests: exit $tests; benchmark: exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
