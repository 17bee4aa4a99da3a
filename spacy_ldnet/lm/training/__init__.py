"""Pretraining of the dense LSTM language model (LD-Net, Liu et al. 2018; ELMo-C outputs, Li et al. 2019).

Modules: ``settings`` (:class:`PretrainConfig`), ``batches`` (sharded,
resumable batch stream), ``build`` (model construction), ``distributed``
(process group), ``state`` and ``checkpoints`` (resumable checkpoints without
pickle), ``evaluate`` (validation figures), ``loop`` (the training loop),
``export`` (final and shipped models), ``runlog`` (``log.jsonl``). The entry
point is :func:`spacy_ldnet.lm.pretrain.pretrain`. The runtime model
(:mod:`spacy_ldnet.lm.model`) does not import this package.
"""
