"""The model library's error base: settings or state a user must fix (a bad view, a foreign
checkpoint, an empty validation set); the pipeline prints these without a traceback."""


class ModelError(ValueError):
    pass
