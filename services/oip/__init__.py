"""The Open Inference Protocol (KServe's V2 inference protocol) for Ballast's services.

tensors.py  an inference request's tensors (JSON, or Triton's binary extension) checked against the
            model's signature; a response's outputs encoded
"""
