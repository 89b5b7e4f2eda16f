"""ONNX export of the embedder, the generic generator and personalized generators, with fp16 and int8 variants.

Everything here needs torch except `config`, which the CLI imports to parse options, and `bench_animate`, which
needs it only to make random-weight models; the graphs it writes are read by the torch-free `demo.engine`.
"""
