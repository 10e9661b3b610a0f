"""Optimizers written from the MLPerf reference equations (not Keras optimizers).

They update a fixed list of variables inside the compiled step: `apply(grads)` computes the learning rate from
`iterations`, updates every variable and increments `iterations`. Each per-variable update is a kernel hot spot
(tf_gp2bm.kernels) a vendor may replace.
"""
