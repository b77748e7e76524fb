"""What LSI is compared with: image-space reconstruction (classic and learned), image
probes, latent inversion from an image, the generative prior fit to readings, and the
full-image reference decoder (the ceiling row of every table)."""
