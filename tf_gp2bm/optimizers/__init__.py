"""Optimizers written from the MLPerf reference equations (not Keras optimizers).

They update a fixed list of variables inside the compiled step: `apply(grads)` computes the learning rate from
`iterations`, updates every variable and increments `iterations`. The whole update is one kernel hot spot
(`lars_apply`, `lamb_apply`: every variable at once) whose default calls a per-variable hot spot (`lars_update`,
`lamb_update`); a vendor may replace either (tf_gp2bm.kernels). The math lives in tf_gp2bm.kernels.defaults.
"""
