"""The runtimes people pick to serve Stable Diffusion without a GPU, measured beside the served pipeline.

    environments.py   one pinned virtualenv per peer (optimum-onnx, optimum-intel), made on first use
    pipelines.py      runs inside a peer's environment: convert, then time batch 1 and a batch sweep
    machine.py        the cores' GEMM peak and the UNet's FLOPs per step, for fractions of peak
"""
