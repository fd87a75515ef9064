"""Code that runs inside Triton's python backend; each repository ``model.py`` imports one module.

    onnx_model.py     any component's ONNX graph in onnxruntime (the ``python`` target)
    torch_model.py    any component's torch module (the ``torch-cuda`` target), with cuda_graphs.py
    txt2img.py        the text-to-image pipeline model, its loop in diffusion_loop.py (schedulers.py)
    preference.py     users' preference heads score embeddings (heads decoded in user_models.py)
    txt2img_score.py  generate, embed and score in one request
    clip_text.py      texts to CLIP text embeddings, tokenized in the server
    bls.py            how these models call each other; component.py and triton_logging.py: shared plumbing

Nothing here imports ``ppo_server.export``: the torch wrappers both sides need are ``ppo_server.wrappers``.
"""
