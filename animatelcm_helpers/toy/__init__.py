"""The toy world, "Moving Digits": data, tiny configs of the real diffusers classes, the model zoo."""
