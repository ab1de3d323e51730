"""IEMOCAP transcripts (real, the standard ERC split, 6 classes): the pipeline's own text stage
(the paper's Kim CNN, cross-fitted; a frozen all-MiniLM-L6-v2; the same encoder fine-tuned,
cross-fitted: ``finetuned``, its protocol in common.TEXT_BACKBONES), then DIMMN against the
bc-LSTM-like and utterance-level baselines in the same run, several seeds; nothing is chosen
on test (early stopping on the valid split's weighted F1).

    python bench/iemocap_text.py --data ../shared/data/iemocap_text --seeds 5

Published with text-CNN features: DialogueRNN 62.75, DialogueGCN 64.18 weighted F1.
The last line is one JSON object (percentages):
{"kim_cnn": {"dimmn": {"acc_mean", "acc_min", "acc_max", "wf1_mean", ...}, "bclstm": {...},
"utterance": {...}}, "sentence_transformer": {...}, "finetuned": {...}, "features": {...}}.
"""
from common import CONTEXT_VARIANTS, last_line, read_iemocap_text, text_bench, text_bench_args

from pipeline.labels import IEMOCAP_EMOTIONS

if __name__ == "__main__":
    args = text_bench_args(__doc__, "iemocap_text")
    variants = {**CONTEXT_VARIANTS, "dimmn_small": {"modalities": ["text"], "window": "all", "K": 3, "L": 2}}
    last_line(text_bench(read_iemocap_text(args.data), IEMOCAP_EMOTIONS, args.seeds, variants, args.train,
                         backbones=args.backbones, stores=args.stores))
