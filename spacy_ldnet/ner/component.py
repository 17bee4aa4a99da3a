"""The ``ldnet_ner`` pipeline component: BiLSTM-CRF named-entity recognition.

LD-Net (Liu et al., EMNLP 2018, section 4.1): token features from an
embedding sublayer, a word-level BiLSTM giving emission scores over BILUO
(= IOBES) tags, a linear-chain CRF with a transition-constraint mask, trained
by the negative log-likelihood (forward algorithm) and decoded by Viterbi.
The model (:mod:`spacy_ldnet.ner.model`) does all of that on one cut of the
batch; this component is the spaCy side: labels, gold BILUO tags from the
examples, tag ids to ``doc.ents`` / ``doc.spans``, saving and loading.

The same component labels other non-overlapping spans, such as CoNLL-2000
chunks: with ``spans_key`` set it reads and writes ``doc.spans[spans_key]``
instead of ``doc.ents`` (see :class:`LDNetNER`).

Every predicted span also gets its probability under the CRF (exact
marginals, :mod:`spacy_ldnet.ner.confidence`), in ``doc.spans[scores_key]``.
"""
import os
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import srsly
import torch
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.ner import ner_score
from spacy.pipeline.spancat import spancat_score
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Model, set_dropout_rate
from thinc.types import Floats2d

from ..precision import PredictionModules, check_precision
from ..sequences import Sequences
from ..thinc_utils import use_torch_params
from ..torch_utils import limit_heap_growth
from ..weights import WeightsError
from .confidence import (
    CANDIDATES_KEY,
    CONFIDENCE_DEFAULTS,
    SCORES_KEY,
    DocPrediction,
    TagLayout,
    check_settings,
    doc_tag_marginals,
    predict_docs,
    scored_group,
)
from .gold import gold_tag_ids
from .model import build_head, crf_loss, cut, emission_scores, has_head, input_width
from .tags import allowed_transitions, biluo_tag_names

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_ldnet.BiLSTMCRFTagger.v1"
hidden_width = 200
num_layers = 1
dropout = 0.5
max_sequence_length = 256
mixed_precision = false

[model.tok2vec]
@architectures = "spacy_ldnet.LMEmbedder.v3"
n_word_rows = 50000
word_width = 50
n_chars = 512
char_width = 30
char_hidden_width = 50
char_output_width = 50
char_dropout = 0.0
load_glove_if_empty = true
lm_vocab_size = 30000
lm_embed_width = 50
lm_hidden_width = 128
forward_layers = 10
backward_layers = 10
lm_output_width = 100
lm_dropout = 0.5
learn_layer_masks = false
cache_lm_tokens = 0
lm_oov_vectors = true
"""
DEFAULT_MODEL = util.load_config_from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "ldnet_ner",
    # doc.ents / token.ent_* with spans_key = null (the default), doc.spans
    # (the group spans_key) otherwise; factory metadata cannot depend on the
    # config, so both are listed.
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL, "scorer": {"@scorers": "spacy.ner_scorer.v1"}, "spans_key": None,
        **CONFIDENCE_DEFAULTS, "precision": "fp32",
    },
    # Spans mode: a config sets [training.score_weights] spans_<key>_f = 1.0 and
    # the ents_* weights to null (see configs/conll00_chunk.cfg).
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_ldnet_ner(
    nlp: Language,
    name: str,
    model: Model,
    scorer: Optional[Callable],
    spans_key: Optional[str] = None,
    scores_key: Optional[str] = SCORES_KEY,
    threshold: float = 0.0,
    candidates_key: Optional[str] = CANDIDATES_KEY,
    candidates_threshold: Optional[float] = None,
    temperature: float = 1.0,
    precision: str = "fp32",
) -> "LDNetNER":
    """Create an :class:`LDNetNER` component (``nlp.add_pipe("ldnet_ner")``).

    ``spans_key = null`` (default): named entities in ``doc.ents``, scored with
    ``spacy.ner_scorer.v1``. ``spans_key = "chunks"``: spans in
    ``doc.spans["chunks"]``, scored with ``spacy.spancat_scorer.v1``
    (``spans_chunks_p/r/f``). The confidence settings (``scores_key``,
    ``threshold``, ``candidates_key``, ``candidates_threshold``,
    ``temperature``) and ``precision`` are described in :class:`LDNetNER`;
    configs written before them get the defaults, which leave the output
    unchanged.
    """
    settings = dict(scores_key=scores_key, threshold=threshold, candidates_key=candidates_key,
                    candidates_threshold=candidates_threshold, temperature=temperature)
    return LDNetNER(nlp.vocab, model, name, scorer=scorer, spans_key=spans_key, precision=precision, **settings)


class LDNetNER(TrainablePipe):
    """BiLSTM-CRF named-entity recogniser (LD-Net, section 4.1).

    Model: ``List[Doc] -> List[Floats2d]`` emission scores (one (n_tokens,
    n_tags) array per doc), built by ``spacy_ldnet.BiLSTMCRFTagger.v1``; its
    torch head also holds the CRF transition scores.

    Tags: BILUO over the labels, index 0 = ``O``; transitions that cannot occur
    in a well-formed BILUO sequence (``I``/``L`` after ``O``, another type
    inside an entity, an open entity at the end) are masked in both training
    (the partition function sums over allowed paths only) and Viterbi.

    Sequences: each doc is read as the token sequences of
    :func:`spacy_ldnet.sequences.sequence_spans` (its sentences, if set; else
    windows of at most the model's ``max_sequence_length`` tokens), cut once
    per :meth:`predict` and once per :meth:`update`.

    Loss: CRF negative log-likelihood, summed over sequences and divided by
    their number. Sequences whose gold annotation is incomplete (missing or
    misaligned tokens) are left out of the loss.

    ``cfg`` holds ``labels`` and ``input_width`` (the embedding width); both are
    restored before the weights, so a saved pipeline rebuilds its torch shapes.

    Spans mode (``spans_key`` set, e.g. ``"chunks"`` for CoNLL-2000 chunking):
    the labels and the gold tags come from ``reference.spans[spans_key]``
    (aligned to the predicted tokens; a reference without that group counts as
    unannotated), predictions are written to ``doc.spans[spans_key]`` as a
    non-overlapping SpanGroup and ``doc.ents`` is left untouched, and
    :meth:`score` calls the scorer (``spacy.spancat_scorer.v1``) with
    ``spans_key`` and ``allow_overlap=False``, giving ``spans_<key>_p/r/f``.
    ``spans_key`` is a factory setting, so it is saved in and restored from
    the pipeline's ``config.cfg`` (not ``cfg``).

    Confidence (factory settings too; exact CRF marginals by forward-backward,
    see :mod:`spacy_ldnet.ner.confidence`):

    - ``scores_key`` (``"ldnet_ner_scores"``; null: none): ``doc.spans[scores_key]``
      holds the spans written to ``doc.ents`` (or ``doc.spans[spans_key]``), in
      order, with ``attrs["scores"]`` (n_spans,) float32: the probability that
      exactly this span carries this label, in (0, 1].
    - ``threshold`` (0.0): spans below it are left out (their tokens are ``O``).
    - ``candidates_threshold`` (null: off) and ``candidates_key``
      (``"ldnet_ner_candidates"``): every span whose probability reaches the
      threshold, overlaps allowed, with ``attrs["scores"]``.
    - ``temperature`` (1.0): emission and transition scores are divided by it
      first (Viterbi is unchanged); ``spacy-ldnet calibrate`` fits it.

    Precision (factory setting ``precision``): ``"fp32"`` (default), or
    ``"int8"``, which predicts with dynamically quantized int8 LSTMs on CPU
    (:mod:`spacy_ldnet.precision`; ``spacy-ldnet quantize`` writes it).
    Training and the saved weights are fp32 either way.

    Raises:
        ValueError: using the component before ``initialize`` (no labels);
            adding a label after the output layer exists; a scorer that does
            not match the mode (spaCy's NER scorer with ``spans_key``, its
            span scorer without); a confidence setting out of range (see
            :func:`spacy_ldnet.ner.confidence.check_settings`); a
            ``precision`` other than ``"fp32"``/``"int8"``; ``"int8"`` with the
            weights on a GPU (at the first prediction).
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "ldnet_ner",
        *,
        scorer: Optional[Callable] = None,
        spans_key: Optional[str] = None,
        precision: str = "fp32",
        **confidence,
    ):
        """``confidence``: the settings of :data:`spacy_ldnet.ner.confidence.CONFIDENCE_DEFAULTS`
        (``scores_key``, ``threshold``, ``candidates_key``, ``candidates_threshold``,
        ``temperature``), each defaulting to its value there."""
        settings = check_settings(spans_key, **confidence)
        if spans_key is not None and scorer is ner_score:
            raise ValueError(
                f"ldnet_ner has spans_key={spans_key!r}, so it writes doc.spans[{spans_key!r}], but its "
                f"scorer is spacy.ner_scorer.v1, which scores doc.ents. Fix: set "
                f'scorer = {{"@scorers":"spacy.spancat_scorer.v1"}} (it reports spans_{spans_key}_p/r/f).'
            )
        if spans_key is None and scorer is spancat_score:
            raise ValueError(
                "ldnet_ner uses spacy.spancat_scorer.v1 but has no spans_key, so it writes doc.ents. "
                'Fix: set spans_key (e.g. "chunks"), or use scorer = {"@scorers":"spacy.ner_scorer.v1"}.'
            )
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.spans_key = spans_key
        self.scores_key: Optional[str] = settings["scores_key"]
        self.threshold = float(settings["threshold"])
        self.candidates_key: Optional[str] = settings["candidates_key"]
        self.candidates_threshold = None if settings["candidates_threshold"] is None else float(settings["candidates_threshold"])
        self.temperature = float(settings["temperature"])
        self.precision = check_precision(precision)
        self._prediction_modules = PredictionModules()
        self.cfg: Dict = {"labels": [], "input_width": None}
        self._torch_threads_pid = os.getpid()
        limit_heap_growth()  # see its docstring: keeps `spacy train` from growing ~10 MB/step

    # ------------------------------------------------------------------ labels
    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.cfg["labels"])

    @property
    def tag_names(self) -> List[str]:
        """BILUO tags, index 0 = ``O`` (see :func:`spacy_ldnet.ner.tags.biluo_tag_names`)."""
        return biluo_tag_names(self.labels)

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(f"ldnet_ner labels must be non-empty strings, got {label!r}")
        if label in self.cfg["labels"]:
            return 0
        if has_head(self.model):
            raise ValueError(
                f"Cannot add label {label!r}: the ldnet_ner output layer is already built for "
                f"{list(self.labels)}. Fix: add all labels before nlp.initialize(), or pass "
                f"labels to initialize (e.g. from 'spacy init labels')."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    # -------------------------------------------------------------- initialize
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
        lm_path: Optional[str] = None,
    ) -> None:
        """Set the labels (given, or read from the examples' entities, or their
        ``spans[spans_key]`` in spans mode), initialise the embedding sublayer
        and build the BiLSTM-CRF head.

        Args:
            labels: the entity (or span) labels (e.g. from ``spacy init labels``);
                read from the examples if None.
            lm_path: for an embedder with LM features
                (``spacy_ldnet.LMEmbedder``), a directory holding ``forward/``
                and ``backward/`` LM checkpoints to load instead of the shipped
                default (set it in ``[initialize.components.ldnet_ner]``).
        """
        validate_get_examples(get_examples, "LDNetNER.initialize")
        if lm_path is not None:
            found_lm = False
            for node in self.model.walk():
                if "lm_path" in node.attrs:
                    node.attrs["lm_path"] = str(lm_path)
                    found_lm = True
            if not found_lm:
                raise ValueError(
                    f"lm_path={lm_path!r} was given to ldnet_ner.initialize, but its embedding layer "
                    f"has no LM. Fix: use the spacy_ldnet.LMEmbedder.v3 architecture, or drop lm_path."
                )
        if labels is not None:
            for label in labels:
                self.add_label(label)
        else:
            found = set(self.cfg["labels"])
            for eg in get_examples():
                found.update(span.label_ for span in self._reference_spans(eg.reference))
            for label in sorted(found):
                self.add_label(label)
        if not self.labels:
            if self.spans_key is not None:
                raise ValueError(
                    f"ldnet_ner found no span labels: no training example has spans in "
                    f"doc.spans[{self.spans_key!r}] and no labels were given. Fix: check the corpus "
                    f"(e.g. spacy-ldnet convert-conll --spans-key {self.spans_key}) or the spans_key "
                    f"setting, or pass labels to initialize."
                )
            raise ValueError(
                "ldnet_ner found no entity labels: the training examples have no entities and no "
                "labels were given. Fix: check the corpus, or pass labels to initialize."
            )
        sample = [eg.predicted for eg in islice(get_examples(), 16)]
        self.model.initialize(X=sample or None)
        self.cfg["input_width"] = input_width(self.model, sample)
        self._build_head()

    def _build_head(self) -> None:
        self._prediction_modules.invalidate()
        build_head(self.model, int(self.cfg["input_width"]), allowed_transitions(self.tag_names))

    def _check_initialized(self) -> None:
        if not has_head(self.model):
            raise ValueError(
                f"The '{self.name}' component (ldnet_ner) is not initialized: it has no labels and no "
                f"output layer. Fix: call nlp.initialize() (or train with 'spacy train') before using "
                f"it, or load a trained pipeline with spacy.load()."
            )

    # ----------------------------------------------------------------- predict
    @property
    def scored(self) -> bool:
        """True when predict computes span probabilities (some setting needs them)."""
        return self.scores_key is not None or self.threshold > 0.0

    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        """Viterbi-decode each doc and, when :attr:`scored`, give each span its
        probability (:func:`spacy_ldnet.ner.confidence.predict_docs`).
        Returns one :class:`spacy_ldnet.ner.confidence.DocPrediction` per doc."""
        docs = list(docs)
        self._check_initialized()
        self._configure_worker_threads()
        with self._prediction_modules.using(self.model, self.precision):
            return predict_docs(
                self.model, docs, TagLayout.from_tag_names(self.tag_names, self.labels), scored=self.scored,
                temperature=self.temperature, candidates_threshold=self.candidates_threshold,
            )

    def tag_marginals(self, docs: Iterable[Doc]) -> List[numpy.ndarray]:
        """Per doc, the (n_tokens, K) tag marginals at this component's
        temperature, columns in :attr:`tag_names` order (see
        :func:`spacy_ldnet.ner.confidence.doc_tag_marginals`)."""
        self._check_initialized()
        with self._prediction_modules.using(self.model, self.precision):
            return doc_tag_marginals(self.model, list(docs), self.temperature)

    def set_annotations(self, docs: Iterable[Doc], predictions: List[DocPrediction]) -> None:
        """Write the decoded spans (those at or above ``threshold``) to
        ``doc.ents``, or in spans mode to ``doc.spans[spans_key]`` (replacing
        that group, ``doc.ents`` untouched); their probabilities to
        ``doc.spans[scores_key]`` and the candidates to
        ``doc.spans[candidates_key]`` when those are on."""
        labels = self.labels
        for doc, pred in zip(docs, predictions):
            keep = pred.scores >= self.threshold if pred.scores is not None else slice(None)
            spans = [Span(doc, int(s), int(e), label=labels[int(lab)]) for s, e, lab in pred.spans[keep]]
            if self.spans_key is not None:
                doc.spans[self.spans_key] = spans
            elif len(doc):
                doc.ents = spans
            if self.scores_key is not None and pred.scores is not None:
                doc.spans[self.scores_key] = scored_group(doc, self.scores_key, pred.spans[keep], pred.scores[keep], labels)
            if pred.candidates is not None:
                doc.spans[self.candidates_key] = scored_group(
                    doc, self.candidates_key, pred.candidates, pred.candidate_scores, labels
                )

    def score(self, examples: Iterable[Example], **kwargs) -> Dict:
        """Score with the configured scorer; in spans mode it is given
        ``spans_key`` and ``allow_overlap=False`` (``spans_<key>_p/r/f``)."""
        if self.spans_key is not None:
            kwargs = {"spans_key": self.spans_key, "allow_overlap": False, **kwargs}
        return super().score(examples, **kwargs)

    # ------------------------------------------------------------- gold spans
    def _reference_spans(self, reference: Doc):
        """The gold spans of a reference doc: its entities, or ``spans[spans_key]``."""
        if self.spans_key is None:
            return reference.ents
        return reference.spans.get(self.spans_key, [])

    def _gold_tag_ids(self, examples: Sequence[Example], seqs: Sequences) -> List[Optional[List[int]]]:
        """Gold tag ids per sequence (see :func:`spacy_ldnet.ner.gold.gold_tag_ids`)."""
        return gold_tag_ids(examples, seqs, self.tag_names, self.spans_key)

    # -------------------------------------------------------------------- loss
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One training step: cut the batch once, emission scores, CRF negative
        log-likelihood (:func:`spacy_ldnet.ner.model.crf_loss`), backprop, and
        ``finish_update(sgd)`` unless ``sgd`` is None. Adds the loss to
        ``losses[self.name]`` and returns ``losses``."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "LDNetNER.update")
        self._check_initialized()
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        set_dropout_rate(self.model, drop)
        seqs = cut(self.model, docs)
        E, backprop = emission_scores(self.model, seqs, is_train=True)
        loss, dE = crf_loss(self.model, E, seqs, self._gold_tag_ids(examples, seqs))
        backprop(dE)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """CRF negative log-likelihood and its gradient w.r.t. per-doc emission
        scores (spaCy's ``get_loss``; :meth:`update` works on the padded batch
        directly). The gradient w.r.t. the CRF transition scores accumulates in
        the torch head's ``.grad`` and is applied by ``finish_update``."""
        examples = list(examples)
        validate_examples(examples, "LDNetNER.get_loss")
        seqs = cut(self.model, [eg.predicted for eg in examples])
        if not len(seqs):
            return 0.0, [self.model.ops.alloc2f(*s.shape) for s in scores]
        loss, dE = crf_loss(self.model, seqs.pad(scores, self.model.ops), seqs, self._gold_tag_ids(examples, seqs))
        return loss, seqs.unpad(dE, self.model.ops)

    def finish_update(self, sgd) -> None:
        """Apply the accumulated gradients, then clamp any LM layer-selection
        masks to [0, 1] (LD-Net section 3.3)."""
        super().finish_update(sgd)
        self._prediction_modules.invalidate()
        for node in self.model.walk():
            for shim in node.shims:
                clamp = getattr(getattr(shim, "_model", None), "clamp_layer_masks", None)
                if clamp is not None:
                    clamp()

    def use_params(self, params: Dict):
        """Use ``params`` (spaCy passes ``optimizer.averages`` when
        ``[training.optimizer] use_averages = true``) for evaluation and saving,
        torch weights included (see :func:`spacy_ldnet.thinc_utils.use_torch_params`).

        A generator, like ``TrainablePipe.use_params``: ``Language.use_params``
        steps it with ``next()`` rather than entering it."""
        self._prediction_modules.invalidate()
        try:
            with use_torch_params(self.model, params), self.model.use_params(params):
                yield
        finally:
            self._prediction_modules.invalidate()

    def _configure_worker_threads(self) -> None:
        # nlp.pipe(n_process>1) forks workers: one torch thread each, or they
        # oversubscribe the cores (and can deadlock in OpenMP).
        pid = os.getpid()
        if pid != self._torch_threads_pid:
            torch.set_num_threads(1)
            self._torch_threads_pid = pid

    # ----------------------------------------------------------- serialization
    # spans_key is a factory setting: it is saved in config.cfg, not in cfg.
    def _ensure_head_from_cfg(self) -> None:
        if self.cfg.get("labels") and self.cfg.get("input_width") and not has_head(self.model):
            self._build_head()

    # to_bytes / to_disk: TrainablePipe's (cfg, vocab, model).
    def _load_weights(self, data: bytes, source: str) -> None:
        """Build the head from the restored ``cfg``, then load the weights.

        Raises: ValueError naming ``source``: corrupt weights, or weights saved
        with another model config."""
        self._ensure_head_from_cfg()
        self._prediction_modules.invalidate()
        try:
            self.model.from_bytes(data)
        except WeightsError as e:  # its message already names the problem and the fix
            raise type(e)(f"Could not load the ldnet_ner weights from {source}: {e}") from e
        except (ValueError, KeyError, RuntimeError, IndexError) as e:
            raise ValueError(
                f"Could not load the ldnet_ner weights from {source}: {e}. The file is corrupt or was "
                f"saved with a different model config. Fix: re-save the pipeline, or check that its "
                f"config.cfg matches the one it was trained with."
            ) from e

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "LDNetNER":
        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self._load_weights(b, "bytes"),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        return self

    def from_disk(self, path, *, exclude=tuple()) -> "LDNetNER":
        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self._load_weights(p.read_bytes(), str(p)),
        }
        util.from_disk(util.ensure_path(path), deserialize, exclude)
        return self
