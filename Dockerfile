# The project inside NVIDIA's Triton Inference Server container, for GPU hosts.
# Not yet run in CI (no GPU or container runtime there); see docs/deploy.md.
#
#   docker build --build-arg TRITON_IMAGE=<the NVIDIA Triton server image, e.g. tag 24.08-py3> -t ppo-triton .
#   docker run --gpus all -v $PWD/models:/models ppo-triton \
#       ppo-export --preset demo --target tensorrt --precision fp16 --out /models
#   docker run --gpus all -p 8000:8000 -p 8001:8001 -v $PWD/models:/models ppo-triton
ARG TRITON_IMAGE
FROM ${TRITON_IMAGE}

WORKDIR /opt/ppo
COPY pyproject.toml README.md ./
COPY client ./client
COPY server_export ./server_export
COPY demo ./demo
# the python backend's stub needs numpy<2; the export tools need torch and diffusers (and tensorrt
# for --target tensorrt, which the container's TensorRT provides)
RUN python3 -m pip install --no-cache-dir -e ".[server]" && python3 -m pip install --no-cache-dir "numpy<2"

EXPOSE 8000 8001
CMD ["tritonserver", "--model-repository=/models", "--allow-metrics=true"]
