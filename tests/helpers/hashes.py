"""Print the sha256 of a seeded sample of every pipeline the course uses (JSON), for
tests/test_determinism.py: the same numbers in this process and in another one."""

import hashlib
import json

import numpy as np
import torch


def hashes() -> dict:
    from animatelcm_helpers import config, pipelines, svd

    config.setup(world="toy", test_mode=True)
    out = {}
    for model in ("animatelcm", "teacher"):
        pipe = pipelines.load_t2v(model)
        out[model] = pipelines.generate(pipe, "a seven moving left", steps=2, seed=5).frames
    image = pipelines.load_t2i()
    with torch.inference_mode():
        img = image("a seven", num_inference_steps=2, guidance_scale=1.0, height=32, width=32,
                    generator=torch.Generator().manual_seed(5), output_type="np").images
    out["t2i"] = np.round(img * 255).astype(np.uint8)
    pipe, _ = svd.toy_svd_pipeline()
    out["svd"] = svd.generate_svd(pipe, np.full((32, 32, 3), 128, np.uint8), steps=2, seed=5, max_guidance=1.0).frames
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in out.items()}


if __name__ == "__main__":
    print(json.dumps(hashes()))
