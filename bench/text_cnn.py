"""The text CNN alone (utterance level, no context) on real transcripts: MELD (7 emotions) and
IEMOCAP (6 emotions), trained on train, early stopping on dev/valid, scored on test.

    python bench/text_cnn.py --data ../shared/data

Published for comparison: MELD's text-CNN 55.0 accuracy (about 55 weighted F1).
The last line is one JSON object: {"meld": {"acc", "wf1"}, "iemocap": {"acc", "wf1"}} (percentages).
"""
import argparse
from pathlib import Path

from common import last_line, read_iemocap_text, read_meld_text, text_cnn_features

from extractors.text import TextConfig
from pipeline.labels import IEMOCAP_EMOTIONS, MELD_EMOTIONS

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--vectors", default="glove-6b-50d", help="null for Word2Vec on the training transcripts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    vectors = None if args.vectors in ("null", "none", "") else args.vectors
    config = TextConfig(vectors=vectors, embedding_dim=50 if vectors == "glove-6b-50d" else 100, seed=args.seed,
                        epochs=30, patience=5, lr=1e-3)
    result = {}
    for name, frame, classes in (("meld", read_meld_text(Path(args.data) / "meld_text"), MELD_EMOTIONS),
                                 ("iemocap", read_iemocap_text(Path(args.data) / "iemocap_text"), IEMOCAP_EMOTIONS)):
        _, _, metrics, info = text_cnn_features(frame, classes, config)
        result[name] = {"acc": round(metrics["acc"], 2), "wf1": round(metrics["wf1"], 2)}
        print(f"{name}: test acc {metrics['acc']:.2f} wF1 {metrics['wf1']:.2f} ({len(info['history'])} epochs, "
              f"vocabulary {info['vocab_size']}, {info['vectors_coverage']:.0%} in the word vectors)", flush=True)
    last_line(result)
