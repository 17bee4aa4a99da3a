"""The ``spacy-ldnet`` console script (typer).

Each command lives in its own module under ``spacy_ldnet.cli`` and registers
itself on :data:`app` when imported below.
"""
import typer

app = typer.Typer(
    name="spacy-ldnet",
    help="LD-Net for spaCy: language-model pretraining, layer selection and pruning.",
    no_args_is_help=True,
    add_completion=False,
)



@app.callback()
def _root() -> None:
    """LD-Net for spaCy: language-model pretraining, layer selection and pruning."""


# Command modules (each does ``@app.command(...)``):
from . import convert  # noqa: E402,F401
from . import pretrain_lm  # noqa: E402,F401
from . import lm_info  # noqa: E402,F401
from . import prune  # noqa: E402,F401
from . import cut_lms  # noqa: E402,F401
from . import calibrate  # noqa: E402,F401
from . import annotate  # noqa: E402,F401
from . import trim_vectors  # noqa: E402,F401
from . import quantize  # noqa: E402,F401
from . import init_config  # noqa: E402,F401


def main() -> None:
    app()
