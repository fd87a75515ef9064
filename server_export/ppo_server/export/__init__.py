"""Export a Stable-Diffusion-family pipeline to ONNX files and a Triton model repository."""
