"""lskd core: the loss and analysis formulas in plain torch/numpy, shared by every front-end.

The one piece not in Python is the KD loss's CPU row kernel (``kernels/kd_rows.cpp``), which torch's own
extension builder compiles (``lskd.cpu_kernel``). Import the module you need (``lskd.losses``,
``lskd.diffusion``, ``lskd.errors``); this package file imports nothing, so ``lskd.errors`` loads
without torch. Nothing in ``lskd`` imports fairseq, torchvision, matplotlib or any data tool: every other
lskd package imports the core, never the reverse.
"""
