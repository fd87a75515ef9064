"""Word lists: prompt modifiers for the random and genetic baselines, descriptors for zero-shot tags.

``MODIFIERS`` are common community text-to-image keywords of the kind Pavlichenko & Ustalov's
genetic algorithm searches over (style, lighting, colour, quality, composition), 100 of them.
``CONFLICTS`` groups keywords that contradict each other (a prompt holds one side of each).
``DESCRIPTORS`` are what the served CLIP is asked about when an image has to be described in words
for a text-only LLM: colour, light, texture, shape, layout and style.
"""

MODIFIERS = (
    "highly detailed", "sharp focus", "intricate", "masterpiece", "best quality", "8k", "4k", "hdr",
    "ultra realistic", "photorealistic", "studio lighting", "soft lighting", "dramatic lighting",
    "cinematic lighting", "golden hour", "volumetric light", "rim light", "natural light", "neon lights",
    "backlit", "bright", "dark", "moody", "high contrast", "low contrast", "vibrant colors", "muted colors",
    "pastel colors", "warm colors", "cool colors", "monochrome", "black and white", "colorful",
    "saturated", "desaturated", "red", "orange", "yellow", "green", "blue", "purple", "pink", "white",
    "black", "gold", "minimalist", "simple background", "clean", "cluttered", "busy background",
    "symmetrical", "centered", "close-up", "wide shot", "macro", "bokeh", "depth of field", "blurry",
    "soft focus", "film grain", "noise", "smooth", "glossy", "matte", "textured", "geometric",
    "abstract", "flat design", "vector art", "digital art", "oil painting", "watercolor", "pencil sketch",
    "concept art", "illustration", "3d render", "octane render", "unreal engine", "trending on artstation",
    "award winning", "elegant", "dreamy", "ethereal", "surreal", "retro", "vintage", "futuristic",
    "cozy", "serene", "bold", "playful", "calm", "striped pattern", "checkered pattern", "polka dots",
    "large", "small", "round", "square", "triangular",
)

DESCRIPTORS = (
    "red", "orange", "yellow", "green", "blue", "purple", "white", "black", "gray", "pink",
    "bright", "dark", "warm colors", "cool colors", "vivid colors", "pale colors", "high contrast",
    "low contrast", "sharp", "blurry", "grainy", "smooth", "striped", "checkered", "plain background",
    "a circle", "a square", "a triangle", "a star", "a ring", "several objects", "one large object",
    "one small object", "empty", "cluttered", "minimal",
)

CONFLICTS = (
    (("warm colors",), ("cool colors",)),
    (("sharp focus", "sharp"), ("blurry", "soft focus")),
    (("monochrome", "black and white", "desaturated"), ("colorful", "vibrant colors", "saturated", "pastel colors")),
    (("vibrant colors", "saturated", "vivid colors"), ("muted colors", "desaturated", "pale colors")),
    (("minimalist", "minimal", "simple background", "plain background", "flat design"),
     ("highly detailed", "intricate", "cluttered", "busy background")),
    (("bright",), ("dark",)),
    (("high contrast",), ("low contrast",)),
    (("glossy",), ("matte",)),
    (("smooth",), ("film grain", "noise", "grainy")),
    (("retro", "vintage"), ("futuristic",)),
    (("close-up", "macro"), ("wide shot",)),
    (("large", "one large object"), ("small", "one small object")),
    (("round",), ("square",), ("triangular",)),
    (("striped pattern",), ("checkered pattern",), ("polka dots",)),
    (("photorealistic", "ultra realistic"), ("oil painting",), ("watercolor",), ("pencil sketch",),
     ("vector art", "flat design"), ("3d render", "octane render")),
    (("empty",), ("cluttered", "several objects")),
)
"""Contradiction groups: a prompt may hold phrases of one side of each group, never of two."""
