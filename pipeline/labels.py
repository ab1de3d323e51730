"""The label sets of the corpora the pipeline knows, in their conventional index order (the
order conv-emotion's loaders use, so an exported pickle reads right there)."""

MELD_EMOTIONS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
MELD_SENTIMENTS = ["negative", "neutral", "positive"]
IEMOCAP_EMOTIONS = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]   # hap, sad, neu, ang, exc, fru
