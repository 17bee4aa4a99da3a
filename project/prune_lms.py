"""Same as ``spacy-ldnet cut-lms`` (kept so that recorded command lines still run).

Usage:
    python project/prune_lms.py LM_DIR OUT_DIR --forward 1,3 --backward 0,3,4,7
    python project/prune_lms.py LM_DIR OUT_DIR --selection prune.json \
        --config configs/conll03_ldnet.cfg --config-out retrain.cfg
"""
import typer

from spacy_ldnet.cli.cut_lms import cut_lms_command

if __name__ == "__main__":
    typer.run(cut_lms_command)
