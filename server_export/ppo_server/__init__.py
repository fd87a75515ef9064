"""Server side: export diffusers pipelines to a Triton model repository and serve it."""
