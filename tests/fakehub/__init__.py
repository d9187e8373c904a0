"""A fake Hugging Face Hub for the tests: a local HTTP server the real huggingface_hub downloads from."""
