"""Run the Triton server binary shipped in the nvidia-pytriton wheel against a model repository."""
