"""``python -m acn_pyg.train``: ``acn-pyg train`` (also under ``torchrun``:
``torchrun --nproc_per_node=N -m acn_pyg.train --target U0 ...``)."""
import sys

from acn_pyg.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
