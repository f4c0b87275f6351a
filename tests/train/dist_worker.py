"""Run the toy task under torchrun: ``torchrun --standalone --nproc_per_node 2 dist_worker.py STRATEGY RUN [UNTIL]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.test_dist import dist_config
from tests.train.toy import ToyTask
from wavefoundry.train.dist import shutdown_distributed
from wavefoundry.train.engine import train

if __name__ == "__main__":
    strategy, run_dir = sys.argv[1], sys.argv[2]
    until = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    try:
        train(ToyTask(dist_config(strategy)), run_dir, resume="--resume" in sys.argv, until=until)
    finally:
        shutdown_distributed()
