"""Export a Stable-Diffusion-family pipeline to ONNX files and a Triton model repository.

    options.py        what one export is asked for (target, precision, serving settings), with the defaults
    specs.py          one declarative spec per component: contract, wrapper, axes, TensorRT profile, backend
    onnx_exporter.py  the one ONNX exporter every spec goes through, checked against torch
    targets.py        one writer per target (python, onnxruntime, tensorrt, torch-cuda)
    tensorrt.py       TensorRT profile limits and the engine builder
    model_config.py   ``config.pbtxt`` generated from the contract through Triton's protobuf schema
    families.py       which checkpoint family a folder holds, and what is refused by name
    checkpoint.py     where a checkpoint is, what its folder must hold, each component loaded in one line's failure
    repository.py     ``export_pipeline``: a pipeline (and a CLIP) to a model repository
    scoring.py        the scoring models: image encoder, preference, clip_text, txt2img_score
    presets.py        pipelines the exporter builds itself (demo, tiny, random SD 1.5 / SDXL)
    cli.py            ``ppo-export``
"""
