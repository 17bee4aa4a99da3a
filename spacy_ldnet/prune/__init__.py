"""Layer selection and exact pruning of the LMs of a trained pipeline (LD-Net section 3.3).

* :mod:`~spacy_ldnet.prune.regularizer`: the regulariser R(z) (torch only)
* :mod:`~spacy_ldnet.prune.selection`: the selection loop, :class:`PruneSettings`
* :mod:`~spacy_ldnet.prune.surgery`: deleting layers from a pipeline or from LM checkpoints
* :mod:`~spacy_ldnet.prune.finetune`: training the pruned pipeline further
* :mod:`~spacy_ldnet.prune.costs`: parameters, multiply-adds per token, words/s
* :mod:`~spacy_ldnet.prune.state`: resumable runs (shared by selection and fine-tuning)
* :mod:`~spacy_ldnet.prune.report`: ``prune.json``, the mask plot, machine info
* :mod:`~spacy_ldnet.prune.workflow`: the steps of ``spacy-ldnet prune``
* :mod:`~spacy_ldnet.prune.locate`: the LM component, its config block, the dev score
* :mod:`~spacy_ldnet.prune.layers`: layer lists given by hand or by a ``prune.json``

Importing this package (and :mod:`~spacy_ldnet.prune.layers`) loads neither
spaCy nor torch, so the command line checks its arguments at once.
"""


class PruneError(ValueError):
    """Layer selection or pruning cannot go on; the message names the problem and the fix."""
