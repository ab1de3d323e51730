"""MELD transcripts (real, its train/dev/test split, 7 emotions, multi-party): the pipeline's own
text stage (the paper's Kim CNN, cross-fitted; a frozen all-MiniLM-L6-v2; the same encoder
fine-tuned, cross-fitted: ``finetuned``, its protocol in common.TEXT_BACKBONES), then DIMMN against
the bc-LSTM-like and utterance-level baselines in the same run, several seeds; early stopping on
MELD's dev split, nothing chosen on test.

    python bench/meld_text.py --data ../shared/data/meld_text --seeds 5
    python bench/meld_text.py --seeds 5 --backbones finetuned --train '{"batch_size": 32}' --stores DIR

Published (text): DialogueRNN 57.03 weighted F1; the DIMMN paper's trimodal 58.6.
The last line is one JSON object, as bench/iemocap_text.py's.
"""
from common import last_line, read_meld_text, text_bench, text_bench_args

from pipeline.labels import MELD_EMOTIONS

if __name__ == "__main__":
    args = text_bench_args(__doc__, "meld_text")
    last_line(text_bench(read_meld_text(args.data), MELD_EMOTIONS, args.seeds, train_params=args.train,
                         backbones=args.backbones, stores=args.stores))
