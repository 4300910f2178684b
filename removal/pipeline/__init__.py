"""Pure image code: bytes in, bytes out. No Django imports, so it can be tested and benchmarked alone.

Steps: ``validate`` (inspect + decode), ``segment`` (ISNet mask), ``compose`` (cutout + encode).
"""
