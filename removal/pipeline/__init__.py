"""Pure image code: bytes in, bytes out. No Django imports: tested and benchmarked alone.

Steps, each a module of plain functions: ``validate`` (inspect + decode), ``segment`` (ISNet
mask), ``refine`` (morphological clean-up), ``matting`` (optional alpha matting), ``trim``
(crop to the subject), ``layout`` (roi, scale, position), ``decontaminate`` (the subject's colour
under fractional alpha), ``encode`` (compose + PNG/WebP/JPEG/ZIP). ``cutout.cut_out`` chains
them.
"""
