"""spatialmix-jax: separable convolutions whose spatial or channel mixers can be frozen at their
random initialisation (Cazenavette, Julin, Lucey, "Rethinking the Role of Spatial Mixing").

A regular package (not a namespace package): TFDS resolves the code path of the `digits`
builder through `importlib.resources`, which cannot resolve a namespace package under pip's
editable install.
"""
