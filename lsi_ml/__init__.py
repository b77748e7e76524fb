"""lsi_ml: training and evaluation of latent-space single-pixel cameras."""

__version__ = "0.1.0"
