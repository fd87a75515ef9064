"""Code that runs inside Triton's python backend; each repository ``model.py`` imports one module."""
