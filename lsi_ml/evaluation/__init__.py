"""Scoring: shared evaluation machinery (``common``), the latent route (``latent``), the image
route (``images``) and their result (``result``); metrics (``metrics``), Frechet distances
(``frechet``), bootstrap intervals (``bootstrap``) and Table-1 rows (``table1``); dlib face
landmarks and verification (``faces``); the SynthFace recognizer (``recognizer``), its cache
(``recognizer_cache``) and verification protocol (``recognizer_verification``)."""
