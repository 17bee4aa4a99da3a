"""``python -m spacy_ldnet.cli``: the same as the ``spacy-ldnet`` console script."""
from . import main

main()
