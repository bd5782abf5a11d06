"""memsim workloads: the torch layer (quantisers, quantised layers, models, losses, training,
metrics, data sets) and the bridge between a model's weights and a `memsim.memory.MemoryImage`.

Depends on `memsim` (the memory layer); nothing in `memsim.spec`, `memsim.physics`,
`memsim.memory` or `memsim.kernels` imports it.
"""
