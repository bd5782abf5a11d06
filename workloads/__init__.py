"""memsim workloads: the torch layer (quantisers, quantised layers, models, losses, training,
metrics, data sets) and the bridge between a model's weights and a `memsim.memory.MemoryImage`.

Depends on `memsim` (the memory layer); nothing in `memsim.spec`, `memsim.physics`,
`memsim.memory` or `memsim.kernels` imports it.
"""

from memsim.workloads.bridge import BridgeError, ModelImage
from memsim.workloads.data import (
    DATASET_NAMES,
    DataError,
    Dataset,
    DataSplit,
    Normalisation,
    load_dataset,
    make_loader,
    make_synthetic,
)
from memsim.workloads.layers import (
    QuantizedConv2d,
    QuantizedLinear,
    QuantizedWeightLayer,
    clear_weight_codes,
    clip_weights_,
    iter_quantized_layers,
    load_weight_codes,
    weight_codes,
)
from memsim.workloads.losses import (
    ConsistencyRegularization,
    CrossEntropyLoss,
    LossError,
    MarginCrossEntropyLoss,
    ModifiedHingeLoss,
    resolve_loss,
)
from memsim.workloads.models import ModelError, build_model, model_names
from memsim.workloads.packed_bnn import PackedBNN, PackedBNNError
from memsim.workloads.ptq import quantize_model
from memsim.workloads.quant import (
    AsymmetricQuantizer,
    LearnedStepQuantizer,
    QuantizationError,
    SignActivation,
    SignQuantizer,
    SymmetricQuantizer,
    WeightCodes,
    WeightQuantizer,
    make_weight_quantizer,
    resolve_quantizer,
)

__all__ = [
    "DATASET_NAMES",
    "AsymmetricQuantizer",
    "BridgeError",
    "ConsistencyRegularization",
    "CrossEntropyLoss",
    "DataError",
    "DataSplit",
    "Dataset",
    "LearnedStepQuantizer",
    "LossError",
    "MarginCrossEntropyLoss",
    "ModelError",
    "ModelImage",
    "ModifiedHingeLoss",
    "Normalisation",
    "PackedBNN",
    "PackedBNNError",
    "QuantizationError",
    "QuantizedConv2d",
    "QuantizedLinear",
    "QuantizedWeightLayer",
    "SignActivation",
    "SignQuantizer",
    "SymmetricQuantizer",
    "WeightCodes",
    "WeightQuantizer",
    "build_model",
    "clear_weight_codes",
    "clip_weights_",
    "iter_quantized_layers",
    "load_dataset",
    "load_weight_codes",
    "make_loader",
    "make_synthetic",
    "make_weight_quantizer",
    "model_names",
    "quantize_model",
    "resolve_loss",
    "resolve_quantizer",
    "weight_codes",
]
