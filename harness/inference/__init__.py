"""Models and inference: where a factory is imported from, ``model.input`` in front of a
model, the detector output contract, batched inference and cached predictions."""
