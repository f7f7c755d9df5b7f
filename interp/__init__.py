"""interp: mechanistic interpretability of subliminal learning."""

__version__ = "0.1.0"
