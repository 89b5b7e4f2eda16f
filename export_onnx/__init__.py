"""ONNX export of the embedder, the generic generator and personalized generators, with fp16 and int8 variants.

Everything here needs torch except `config`, which the CLI imports to parse options; the graphs it writes are read
by the torch-free `demo.engine`.
"""
