__title__ = "spacy-ldnet"
__version__ = "0.1.0"
