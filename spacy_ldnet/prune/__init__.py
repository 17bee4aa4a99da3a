"""Layer selection and exact pruning of the LMs of a trained pipeline (LD-Net section 3.3).

* :func:`spacy_ldnet.prune.regularizer.layer_selection_penalty` (torch only)
* :mod:`spacy_ldnet.prune.select`: the continued-training loop, physical
  pruning of a spaCy pipeline, costs and the mask plot (imports spaCy).
"""
