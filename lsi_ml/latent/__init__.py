"""The latent route: the optical encoder (masks on a bench model), the digital decoder
from readings to a latent, its losses, the probes that read a latent, and the fit of a
decoded latent to its own readings."""
