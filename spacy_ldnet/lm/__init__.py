"""Dense LSTM language model (LD-Net) with softmax, adaptive and continuous (ELMo-C) outputs.

The runtime: the model, its output layers and its checkpoints. Depends on
torch (and numpy / safetensors), never on spaCy or thinc. Public API:

* :class:`LMConfig` (``config.py``)
* :class:`DenseLSTMEncoder`, :func:`reverse_padded`, :func:`dense_output_columns`
  (``encoder.py``)
* :class:`DenseLSTMLM`, :class:`LMOutput` (``model.py``, which re-exports the above)
* :class:`SoftmaxOutput`, :class:`AdaptiveSoftmaxOutput`,
  :class:`ContinuousOutput`, :func:`build_output_layer`,
  :func:`vmf_log_normaliser`, :func:`glove_target_table` (``outputs.py``)
* :func:`save_lm`, :func:`load_lm`, :func:`read_lm_config`,
  :class:`LMCheckpointError` (``checkpoint.py``)

Corpus text and vocabularies are in :mod:`spacy_ldnet.lm.data`; pretraining
is in :mod:`spacy_ldnet.lm.training` (entry point :mod:`spacy_ldnet.lm.pretrain`).
"""
from .model import (
    CONTINUOUS_OUTPUTS,
    DIRECTIONS,
    OUTPUT_TYPES,
    DenseLSTMEncoder,
    DenseLSTMLM,
    LMConfig,
    LMOutput,
    dense_output_columns,
    reverse_padded,
)
from .checkpoint import LMCheckpointError, load_lm, read_lm_config, save_lm
from .outputs import (
    AdaptiveSoftmaxOutput,
    ContinuousOutput,
    OutputLayer,
    SoftmaxOutput,
    build_output_layer,
    glove_target_table,
    vmf_log_normaliser,
)

__all__ = [
    "CONTINUOUS_OUTPUTS",
    "DIRECTIONS",
    "OUTPUT_TYPES",
    "AdaptiveSoftmaxOutput",
    "ContinuousOutput",
    "DenseLSTMEncoder",
    "DenseLSTMLM",
    "LMCheckpointError",
    "LMConfig",
    "LMOutput",
    "OutputLayer",
    "SoftmaxOutput",
    "build_output_layer",
    "dense_output_columns",
    "glove_target_table",
    "load_lm",
    "read_lm_config",
    "reverse_padded",
    "save_lm",
    "vmf_log_normaliser",
]
