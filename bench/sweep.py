"""Model variants over several seeds on one saved store: ablations and sweeps, on the GPU if there is one.

    python bench/sweep.py --store .stores/iemocap/kim_cnn.npz --seeds 5 \\
        --variant dimmn '{"modalities": ["text"], "window": "all"}' \\
        --variant dimmn_both '{"modalities": ["text"], "window": "all", "direction": "both"}'

Stores come from the text benchmarks' ``--stores`` folder or the pipeline's ``data/store.npz``.
Training settings default to the text benchmarks' (``--train '{"lr": 5e-4}'`` overrides them);
selection uses the valid split only. ``--train-share 0.25`` trains on a quarter of the training
dialogues (valid and test whole), for learning curves. The last line is one JSON object, as the other benchmarks'.
"""
import argparse
import json

from common import run_store_sweep, store_sweep_arguments

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_sweep_arguments(parser)
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "MODEL_JSON"), required=True)
    parser.add_argument("--train-share", type=float, default=1.0,
                        help="train on this share of the training dialogues (seed 0 picks them): a learning curve")
    args = parser.parse_args()
    run_store_sweep(args, {name: json.loads(spec) for name, spec in args.variant}, args.train_share)
