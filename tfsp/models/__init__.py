"""Keras 3 models: backbones and task heads (SSD, ...).

Every model takes a float32 RGB image in [0, 255] named ``image`` and normalises it inside
the graph; outputs are raw, separately named tensors decoded by :mod:`tfsp.postprocess`.
"""
